"""test-broker backup / restore: a consistent copy beside a minting broker, and a broker from it.

The backup runs in this process while a broker process mints: tests/conftest.py's audit hook
fails any Python-level open of the database files, so the copy is SQLite's own.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from broker.main import main
from broker.store.sqlite import SCHEMA_VERSION
from broker.testing.live import free_loopback_url, spawn_broker, wait_until
from tests.server.test_operators_beside_broker import Load, Operator, mint
from tests.store.test_sqlite_upgrade import CI_ID, DEV_ID, old_database_in, schema


def cli(env: dict[str, str], *args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(main, [*args, "--json"], env=env)
    return result.exit_code, json.loads(result.output)


def jtis(data_dir: Path) -> set[str]:
    with closing(sqlite3.connect(data_dir / "broker.sqlite3")) as conn:
        return {jti for (jti,) in conn.execute("SELECT jti FROM audit WHERE result = 'ok'")}


@pytest.fixture
def brokers() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def env_for(data_dir: Path) -> dict[str, str]:
    return {
        "BROKER_OIDC_ISSUER": free_loopback_url(),
        "BROKER_DATA_DIR": str(data_dir),
        "BROKER_CREDENTIAL_MINTING": "true",
        "BROKER_RATE_LIMITS": "off",
    }


def serve(env: dict[str, str], brokers: list[subprocess.Popen[str]]) -> str:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    brokers.append(spawn_broker(env, **quiet))
    return env["BROKER_OIDC_ISSUER"]


def kids(url: str) -> set[str]:
    return {k["kid"] for k in httpx.get(f"{url}/.well-known/jwks.json").json()["keys"]}


@pytest.mark.integration
def test_a_backup_beside_a_minting_broker_restores_into_a_working_broker(
    tmp_path: Path, brokers: list[subprocess.Popen[str]]
) -> None:
    live, restored = tmp_path / "live", tmp_path / "restored"
    env = env_for(live)
    url = serve(env, brokers)
    op = Operator({k: v for k, v in env.items() if k != "BROKER_OIDC_ISSUER"})
    runner = op.run("credentials", "add", "--kind", "ci", "--name", "runner")
    revoked = op.run("credentials", "add", "--kind", "ci", "--name", "gone")
    op.run("credentials", "revoke", "gone")
    with Load(url, [(str(runner["secret"]), {"scope": "ci/runner/load"})]) as load:
        wait_until(lambda: len(load.received) >= 20, timeout=30)  # minting is under way
        received = list(load.received)
        code, copied = cli(env, "backup", str(tmp_path / "backup"))
    assert code == 0, copied
    assert set(received) <= jtis(tmp_path / "backup")  # every token handed out before it
    assert copied["credentials"] == 2
    assert copied["files"] == ["federation.key"]
    assert set(copied["kids"]) == kids(url)  # type: ignore[arg-type]

    restored_env = env_for(restored)
    code, back = cli(restored_env, "restore", str(tmp_path / "backup"))
    assert code == 0, back
    assert back["kids"] == copied["kids"]
    assert (restored / "federation.key").read_bytes() == (live / "federation.key").read_bytes()
    new_url = serve(restored_env, brokers)
    assert kids(new_url) == kids(url)
    assert mint(new_url, str(runner["secret"]), scope="ci/runner/after") == 200
    assert mint(new_url, str(revoked["secret"]), scope="ci/gone/x") == 401
    assert oct(restored.stat().st_mode & 0o777) == "0o700"
    assert oct((restored / "broker.sqlite3").stat().st_mode & 0o777) == "0o600"


def test_backup_never_overwrites_and_restore_never_mixes(tmp_path: Path) -> None:
    env = {"BROKER_DATA_DIR": str(tmp_path / "data")}
    assert (
        CliRunner()
        .invoke(main, ["credentials", "add", "--kind", "dev", "--name", "a"], env=env)
        .exit_code
        == 0
    )
    CliRunner().invoke(main, ["keys", "rotate"], env=env)
    (tmp_path / "taken").mkdir()
    code, body = cli(env, "backup", str(tmp_path / "taken"))
    assert (code, body["error"]) == (2, "config_error")
    code, body = cli(env, "backup", str(tmp_path / "copy"))
    assert code == 0, body
    # the data dir still holds its state: restoring over it is refused, and nothing changed
    code, body = cli(env, "restore", str(tmp_path / "copy"))
    assert (code, body["error"]) == (2, "config_error")
    assert "move the data dir aside" in str(body["message"])
    code, body = cli(env, "restore", str(tmp_path / "taken"))
    assert (code, body["error"]) == (2, "input_file_error")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partials


def test_a_backup_from_an_older_broker_is_migrated_on_restore(tmp_path: Path) -> None:
    backup = old_database_in(tmp_path / "old-backup")  # written by the broker of commit 5b17a79
    env = {"BROKER_DATA_DIR": str(tmp_path / "data")}
    code, body = cli(env, "restore", str(backup))
    assert (code, body["schema_version"]) == (0, 0), body  # what the backup held
    assert schema(tmp_path / "data")[0] == SCHEMA_VERSION
    assert schema(backup)[0] == 0  # the backup itself is read, never migrated
    code, listed = cli(env, "credentials", "list")
    assert {c["id"] for c in listed["credentials"]} >= {DEV_ID, CI_ID}  # type: ignore[union-attr]
