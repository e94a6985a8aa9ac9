"""deploy/RUNBOOK.md: every ```sh block runs, procedure by procedure, against a local broker.

The blocks are read from the file itself (never copied here), so a renamed command or option
fails this test instead of an incident. Each procedure gets a fresh https broker on loopback
(a trustme chain, ``CURL_CA_BUNDLE`` for curl), its blocks in one ``bash -euo pipefail`` in a
separate process, as an operator's shell beside the broker; then what the procedure is for is
checked from outside (the old secret still works, the kid is gone, the backup restores).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from broker.main import main
from broker.store import open_store
from broker.testing.live import LiveBroker, StartBroker
from tests.server.test_key_rotation import keys_published_an_hour_ago

RUNBOOK = Path(__file__).parents[2] / "deploy" / "RUNBOOK.md"
MINT = "/v1/mint-oidc-jwt"
_FENCE = re.compile(r"^```(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    section: str
    info: str  # what follows the opening ```
    text: str

    @property
    def runs(self) -> bool:
        return self.info == "sh"


def blocks(markdown: str) -> list[Block]:
    """Every fenced block, with the ``## `` section it is in."""
    found: list[Block] = []
    section, info, lines = "", None, []
    for line in markdown.splitlines():
        fence = _FENCE.match(line)
        if info is None and line.startswith("## "):
            section = line[3:].strip()
        elif info is None and fence:
            info, lines = fence["info"].strip(), []
        elif info is not None and line == "```":
            found.append(Block(section, info, "\n".join(lines) + "\n"))
            info = None
        elif info is not None:
            lines.append(line)
    assert info is None, "an unclosed ``` block"
    return found


BLOCKS = blocks(RUNBOOK.read_text())


def procedures() -> dict[str, str]:
    """Each section with blocks to run: the script its blocks make, in order."""
    scripts: dict[str, str] = {}
    for block in BLOCKS:
        if block.runs:
            scripts[block.section] = scripts.get(block.section, "") + block.text
    return scripts


def test_every_block_is_run_or_says_why_not() -> None:
    assert BLOCKS
    for block in BLOCKS:
        marker = re.fullmatch(r"sh not-run: (?P<why>\S.{10,})", block.info)
        assert block.runs or marker, (
            f"{block.section}: ```{block.info} (use sh, or sh not-run: WHY)"
        )


# -- a local broker, and the operator's shell beside it -----------------------------------------

NAME, SCOPE = "web", "ci/web/pr-1/run-1"


@dataclass
class Local:
    broker: LiveBroker
    env: dict[str, str]
    secret: str  # the CI bearer the procedures work on
    data: Path
    work: Path

    def mint(self, secret: str, scope: str = SCOPE) -> int:
        headers = {"Authorization": f"Bearer {secret}"}
        return self.broker.client.post(MINT, headers=headers, json={"scope": scope}).status_code

    def credentials(self) -> list[dict[str, object]]:
        out = CliRunner().invoke(main, ["credentials", "list", "--json"], env=self.env)
        return json.loads(out.output)["credentials"]  # type: ignore[no-any-return]

    def kids(self) -> set[str]:
        return {k["kid"] for k in self.broker.client.get("/.well-known/jwks.json").json()["keys"]}


@pytest.fixture
def local(live_broker: StartBroker, tls_ca: trustme.CA, ca_file: Path, tmp_path: Path) -> Local:
    data = keys_published_an_hour_ago(tmp_path / "data")  # `keys rotate` may promote at once
    broker = live_broker(tls=tls_ca, data_dir=data, credential_minting=True)
    config = tmp_path / "config.toml"
    config.write_text(
        f'oidc_issuer = "{broker.url}"\ndata_dir = "{data}"\ncredential_minting = true\n'
        f"key_reload_seconds = {broker.settings.key_reload_seconds}\n"
    )
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "BROKER_CONFIG": str(config),
        "CURL_CA_BUNDLE": str(ca_file),
        "ISSUER": broker.url,
        "BROKER": broker.url,
        "NAME": NAME,
        "GRACE": "600",
        "SCOPE": SCOPE,
        "SINCE": str(int(time.time()) - 5),
        "BACKUP_DIR": str(tmp_path / "backups"),
        "DATA_DIR": str(data),
    }
    (tmp_path / "backups").mkdir()
    args = ["credentials", "add", "--kind", "ci", "--name", NAME, "--scope-pattern", "ci/web/**"]
    added = CliRunner().invoke(main, [*args, "--json"], env=env)
    local = Local(broker, env, json.loads(added.output)["secret"], data, tmp_path / "work")
    local.work.mkdir()
    assert local.mint(local.secret, "ci/web/pr-0/run-0") == 200  # something for the audit
    active = CliRunner().invoke(main, ["keys", "list", "--json"], env=env).output
    local.env["KID"] = next(k["kid"] for k in json.loads(active)["keys"] if k["state"] == "active")
    return local


def run(local: Local, script: str) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=local.work,
        env=local.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


# -- what each procedure must have achieved ------------------------------------------------------


def rotated_bearer(local: Local, out: str) -> None:
    assert "old secret works until" in out
    assert local.mint(local.secret) == 200  # jobs already running keep working
    [live] = [c for c in local.credentials() if c["revoked_at"] is None]
    assert isinstance(live["previous_valid_until"], int)
    assert live["previous_valid_until"] > time.time() + 500  # the grace asked for, 600 s


def key_removed(local: Local, out: str) -> None:
    assert local.env["KID"] in out  # listed before its removal
    assert local.env["KID"] not in local.kids()
    listed = CliRunner().invoke(main, ["keys", "list", "--json"], env=local.env).output
    assert local.env["KID"] not in {k["kid"] for k in json.loads(listed)["keys"]}


def cert_checked(local: Local, out: str) -> None:
    report = json.loads((local.work / "check-cert.json").read_text())
    assert report["endpoint"] == local.broker.url.removeprefix("https://")
    assert {c["check"] for c in report["checks"]} >= {"expiry", "chain", "tls12", "thumbprint"}
    # trustme's CA is no public one: the runbook's listing shows what check-cert flagged
    assert "trust critical:" in out


def bearer_revoked(local: Local, out: str) -> None:
    assert local.mint(local.secret) == 401
    assert "ci/web/pr-0/run-0" in out  # the audit showed what the leaked secret minted
    webs = [c for c in local.credentials() if c["name"] == NAME]
    assert [c["revoked_at"] is None for c in webs] == [False, True]
    assert webs[0]["scope_pattern"] == webs[1]["scope_pattern"] == "ci/web/**"


def broker_checked(local: Local, out: str) -> None:
    assert local.broker.url in out.splitlines()  # the issuer as discovery states it


def restored(local: Local, out: str) -> None:
    [backup] = (Path(local.env["BACKUP_DIR"])).iterdir()
    assert (backup / "broker.sqlite3").is_file()
    copy = Path(f"{local.data}.restoring")
    with closing(open_store(copy)) as store:
        assert [c.name for c in store.list_credentials()] == [NAME]
    assert {p.name for p in (copy / "keys").glob("*.pem")} == {f"{k}.pem" for k in local.kids()}


CHECKS: dict[str, Callable[[Local, str], None]] = {
    "Rotate a CI bearer without breaking running jobs": rotated_bearer,
    "Rotate the signing key, or remove a leaked one": key_removed,
    "The certificate did not renew": cert_checked,
    "A CI bearer leaked": bearer_revoked,
    "The broker is down": broker_checked,
    "Back up and restore the data dir": restored,
}


def test_every_procedure_has_its_check() -> None:
    assert set(procedures()) == set(CHECKS)


@pytest.mark.parametrize("section", list(procedures()))
def test_the_procedure_runs_against_a_local_broker(local: Local, section: str) -> None:
    out = run(local, procedures()[section])
    CHECKS[section](local, out)


def test_a_broken_command_fails_the_procedure(local: Local) -> None:
    with pytest.raises(AssertionError, match="exit 2"):
        run(local, "test-broker credentials rotate --no-such-option\n")
