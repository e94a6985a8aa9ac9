"""The CLI surface: --help with an example everywhere, --json shapes, exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from joserfc.jwk import ECKey

from broker.main import main
from broker.store import exists, open_store
from broker.store.files import atomic_write
from broker.store.key_records import KeyPolicy, KeyState
from broker.store.keys import KeyStore
from broker.store.sqlite import SqliteStore
from broker.testing.live import free_loopback_url, free_socket


def _command_paths(group: click.Group, prefix: list[str]) -> list[list[str]]:
    # Walked from the click tree, so a new command cannot be left out of the help checks.
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += _command_paths(command, [*prefix, name])
        else:
            paths.append([*prefix, name])
    return paths


COMMANDS = _command_paths(main, [])


def test_the_readme_cli_table_names_every_command() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = [line for line in readme.splitlines() if line.startswith("| `test-broker ")]
    missing = [n for n in main.commands if not any(f"`test-broker {n}" in r for r in table)]
    assert missing == [], "add a row to the README's command table"


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "test-broker")
def test_every_command_has_help_with_an_example(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output


def test_console_script_is_installed_and_fast_to_load() -> None:
    out = subprocess.run(
        [Path(sys.executable).parent / "test-broker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "serve" in out.stdout
    # --help must not import the server stack (keeps every command snappy)
    probe = (
        "import sys, broker.cli; print(*(m in sys.modules for m in ('uvicorn', 'boto3', 'httpx')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.split() == ["False", "False", "False"]


def test_keys_list_json_shape(tmp_path: Path) -> None:
    env = {"BROKER_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    assert runner.invoke(main, ["keys", "rotate"], env=env).exit_code == 0
    result = runner.invoke(main, ["keys", "list", "--json"], env=env)
    assert result.exit_code == 0
    keys = json.loads(result.output)["keys"]
    assert sorted(k["state"] for k in keys) == ["active", "next", "retiring"]
    for key in keys:
        assert set(key) == {
            "kid",
            "alg",
            "state",
            "created_at",
            "activated_at",
            "retire_after",
            "published",
        }


def test_keys_list_table(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"BROKER_DATA_DIR": str(tmp_path)}
    runner.invoke(main, ["keys", "rotate"], env=env)
    lines = runner.invoke(main, ["keys", "list"], env=env).output.splitlines()
    assert lines[0].split() == ["KID", "ALG", "STATE", "CREATED", "ACTIVATED", "RETIRE", "AFTER"]
    assert [line.split()[2] for line in lines[2:]] == ["next", "active", "retiring"]


def test_unknown_kid_exits_1_with_json_error(tmp_path: Path) -> None:
    env = {"BROKER_DATA_DIR": str(tmp_path)}
    CliRunner().invoke(main, ["keys", "rotate"], env=env)
    result = CliRunner().invoke(main, ["keys", "remove", "nope", "--json"], env=env)
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "key_not_found"


def test_bad_config_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["keys", "list"], env={"BROKER_OIDC_ISSUER": "http://example.com"}
    )
    assert result.exit_code == 2
    assert "must use https" in result.output


@pytest.mark.parametrize("command", [["credentials", "list"], ["audit"]])
def test_a_broken_store_is_one_line_not_a_traceback(tmp_path: Path, command: list[str]) -> None:
    # written aside and renamed: only SQLite may open the database's own name (conftest.py)
    (tmp_path / "garbage").write_bytes(b"this is not a database" * 100)
    (tmp_path / "garbage").rename(tmp_path / "broker.sqlite3")
    env = {"BROKER_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, [*command, "--json"], env=env)
    assert result.exit_code == 1
    assert json.loads(result.output) == {
        "error": "io_error",
        "message": "database error: file is not a database",
    }


def test_a_data_dir_that_is_a_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    result = CliRunner().invoke(
        main, ["keys", "rotate"], env={"BROKER_DATA_DIR": str(tmp_path / "data")}
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: ")
    assert len(result.output.strip().splitlines()) == 1
    assert isinstance(result.exception, SystemExit)


def test_python_dash_m_equals_console_script() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "broker", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    assert "version" in out.stdout


# -- keys remove KID, for every kid a thumbprint can be -----------------------------------------


@pytest.fixture(scope="session")
def dashed_keys() -> dict[str, ECKey]:
    """Real P-256 keys whose RFC 7638 thumbprints start with '-', '--' and '-h' (like -h, help)."""
    wanted: dict[str, ECKey] = {}
    while len(wanted) < 3:  # ~1 in 4096 keys for each two-character prefix: about a second
        key = ECKey.generate_key("P-256", private=True)
        kid = key.thumbprint()
        prefix = kid[:2] if kid[:2] in ("--", "-h") else kid[:1]
        if prefix in ("-", "--", "-h") and prefix not in wanted:
            wanted[prefix] = key
    return wanted


def plant_retiring(data_dir: Path, key: ECKey) -> str:
    """Add ``key`` to the store as a retiring key, as a past rotation would have left it."""
    KeyStore(data_dir, _policy()).ensure(1_800_000_000)
    keys_dir = data_dir / "keys"
    kid = key.thumbprint()
    atomic_write(keys_dir / f"{kid}.pem", key.as_pem(private=True))
    doc = json.loads((keys_dir / "state.json").read_text())
    doc["keys"].append(
        {
            "kid": kid,
            "alg": "ES256",
            "state": "retiring",
            "created_at": 1_700_000_000,
            "activated_at": 1_700_000_000,
            "retire_after": 4_000_000_000,
        }
    )
    atomic_write(keys_dir / "state.json", json.dumps(doc).encode())
    return kid


def _policy() -> KeyPolicy:
    from broker.config import load_settings

    return KeyStore.for_settings(load_settings(environ={})).policy


@pytest.mark.parametrize("prefix", ["-", "--", "-h"], ids=["dash", "two-dashes", "dash-h"])
@pytest.mark.parametrize(
    "shape",
    [["KID"], ["KID", "--json"], ["--json", "KID"], ["--", "KID"], ["--json", "--", "KID"]],
    ids="_".join,
)
def test_keys_remove_takes_a_kid_that_starts_with_a_dash(
    tmp_path: Path, dashed_keys: dict[str, ECKey], prefix: str, shape: list[str]
) -> None:
    kid = plant_retiring(tmp_path, dashed_keys[prefix])
    assert kid.startswith(prefix)
    args = ["keys", "remove", *(kid if a == "KID" else a for a in shape)]
    result = CliRunner().invoke(main, args, env={"BROKER_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert kid not in {r.kid for r in KeyStore(tmp_path, _policy()).records()}
    if "--json" in shape:
        assert kid not in {k["kid"] for k in json.loads(result.output)["keys"]}


def test_keys_remove_still_reads_its_options_and_help(tmp_path: Path) -> None:
    env = {"BROKER_DATA_DIR": str(tmp_path)}
    assert "Emergency" in CliRunner().invoke(main, ["keys", "remove", "-h"], env=env).output
    missing = CliRunner().invoke(main, ["keys", "remove"], env=env)
    assert missing.exit_code == 2
    assert "Missing argument 'KID'" in missing.output
    config = tmp_path / "c.toml"
    config.write_text(f'data_dir = "{tmp_path / "d"}"\n')
    CliRunner().invoke(main, ["keys", "rotate"], env={"BROKER_DATA_DIR": str(tmp_path / "d")})
    typo = CliRunner().invoke(main, ["keys", "remove", "--config", str(config), "--jsn"])
    assert typo.exit_code == 1
    assert "no key with kid '--jsn'" in typo.output


# -- keys rotate asks the audit how long the retiring key must stay -----------------------------


def test_keys_rotate_keeps_the_retiring_key_until_the_audited_exp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"BROKER_DATA_DIR": str(tmp_path), "BROKER_MAX_TOKEN_TTL_SECONDS": "600"}
    KeyStore(tmp_path, _policy()).ensure(1_700_000_000)  # next key published long ago
    open_store(tmp_path).close()  # an audit database exists
    asked: list[str] = []
    far = 4_000_000_000

    def max_exp(store: object, kid: str) -> int:
        asked.append(kid)
        return far

    monkeypatch.setattr(SqliteStore, "max_exp", max_exp)
    active = next(r.kid for r in KeyStore(tmp_path, _policy()).records() if r.state == "active")
    result = CliRunner().invoke(main, ["keys", "rotate", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert asked == [active]
    retiring = {k["kid"]: k for k in json.loads(result.output)["keys"]}[active]
    assert retiring["state"] == KeyState.RETIRING
    assert retiring["retire_after"] == far + 300  # not now + 600 + ... from this CLI's config


def test_keys_rotate_without_an_audit_database_creates_none(tmp_path: Path) -> None:
    env = {"BROKER_DATA_DIR": str(tmp_path)}
    assert CliRunner().invoke(main, ["keys", "rotate"], env=env).exit_code == 0
    assert not exists(tmp_path)


# -- damaged state: one line, never a traceback --------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("created_at", 10**30), ("retire_after", 2**63), ("activated_at", -5)]
)
def test_keys_list_with_an_impossible_time_is_one_line(
    tmp_path: Path, field: str, value: int
) -> None:
    env = {"BROKER_DATA_DIR": str(tmp_path)}
    CliRunner().invoke(main, ["keys", "rotate"], env=env)
    state = tmp_path / "keys" / "state.json"
    doc = json.loads(state.read_text())
    doc["keys"][-1][field] = value
    state.write_text(json.dumps(doc))
    for extra in ([], ["--json"]):
        result = CliRunner().invoke(main, ["keys", "list", *extra], env=env)
        assert result.exit_code == 1
        assert isinstance(result.exception, SystemExit)
        assert len(result.output.strip().splitlines()) == 1
        assert f"{field} {value} is not a unix time" in result.output


def test_table_times_outside_what_datetime_shows_are_printed_raw() -> None:
    from broker.cli.common import when

    assert when(0) == "1970-01-01 00:00:00Z"
    assert when(10**30) == str(10**30)
    assert when(-(10**30)) == str(-(10**30))


def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`test-broker serve` as a process; a damaged data dir must stop it before it listens."""
    env = {**os.environ, "BROKER_OIDC_ISSUER": free_loopback_url(), **env}
    cmd = [sys.executable, "-m", "broker", "serve"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


def assert_one_line_refusal(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: ")
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert expected in done.stderr
    assert done.stdout == ""  # it never announced that it listens


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ({"created_at": 10**30}, f"created_at {10**30} is not a unix time"),
        ({"retire_after": 253402300800, "state": "retiring"}, "retire_after 253402300800 is not"),
        ({"state": "active"}, "2 keys are active"),
    ],
    ids=["created-1e30", "retire-after-year-10000", "two-active"],
)
def test_serve_refuses_a_damaged_state_file_in_one_line(
    tmp_path: Path, damage: dict[str, object], expected: str
) -> None:
    KeyStore(tmp_path, _policy()).ensure(1_800_000_000)
    state = tmp_path / "keys" / "state.json"
    doc = json.loads(state.read_text())
    doc["keys"][-1] |= damage  # the next key
    state.write_text(json.dumps(doc))
    assert_one_line_refusal(serve({"BROKER_DATA_DIR": str(tmp_path)}), expected)


@pytest.mark.parametrize("damage", ["short", "unreadable"])
def test_serve_refuses_a_damaged_federation_key_in_one_line(tmp_path: Path, damage: str) -> None:
    secret = tmp_path / "federation.key"
    tmp_path.chmod(0o700)
    if damage == "short":
        secret.write_bytes(b"12345")
        expected = "federation.key holds 5 bytes, expected 32; delete it to regenerate"
    else:
        secret.mkdir()  # unreadable as a file, whoever runs the test (root reads any mode)
        expected = "Is a directory"
    assert_one_line_refusal(serve({"BROKER_DATA_DIR": str(tmp_path)}), expected)


def test_serve_refuses_a_damaged_database_in_one_line_whatever_it_mints(tmp_path: Path) -> None:
    # Federation-only too: the audit writer's store opens before uvicorn starts, not inside it.
    tmp_path.chmod(0o700)
    (tmp_path / "garbage").write_bytes(b"this is not a database" * 100)
    (tmp_path / "garbage").rename(tmp_path / "broker.sqlite3")
    assert_one_line_refusal(serve({"BROKER_DATA_DIR": str(tmp_path)}), "file is not a database")


def test_doctor_now_beyond_what_a_date_can_show_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        main, ["doctor", "--issuer", "https://x.example", "--now", "1" * 21]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with contextlib.closing(free_socket()) as taken:
        taken.listen()
        url = f"http://127.0.0.1:{taken.getsockname()[1]}"
        env = {"BROKER_OIDC_ISSUER": url, "BROKER_DATA_DIR": str(tmp_path / "data")}
        done = serve(env | {"BROKER_LOG_LEVEL": "error"})  # start-up info lines aside
    assert_one_line_refusal(done, "cannot listen on 127.0.0.1")
