"""The pytest plugin, run with pytester in fresh processes, as a user's suite would load it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import httpcore  # noqa: F401 - see below
import httpx
import pytest

from broker.testing.live import free_loopback_url, spawn_broker

# pytester removes the modules a test imported once it ends; httpx imports httpcore on its first
# request, and a second copy of httpcore would raise exceptions httpx no longer recognises. Hence
# the import above, before any test runs.

USES_THE_FIXTURES = """
import json, pathlib
import jwt

def test_it(test_broker, test_jwt, run_scope):
    claims = jwt.decode(test_jwt(), options={"verify_signature": False})
    short = jwt.decode(test_jwt(ttl=30), options={"verify_signature": False})
    pathlib.Path(__file__).with_name("seen.json").write_text(json.dumps(
        {"url": test_broker, "claims": claims, "short": short, "run_scope": run_scope}
    ))
"""


@pytest.fixture(autouse=True)
def _no_contract_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("TEST_BROKER_", "GITHUB_", "CI_")):
            monkeypatch.delenv(name)


@pytest.fixture
def remote_broker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A broker started separately, as a user's CI would run one: its URL and data dir."""
    url, data = free_loopback_url(), tmp_path / "remote-data"
    env = {
        "BROKER_OIDC_ISSUER": url,
        "BROKER_DATA_DIR": str(data),
        "BROKER_CREDENTIAL_MINTING": "1",
    }
    proc = spawn_broker(env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield url, data
    finally:
        proc.terminate()
        proc.wait(10)


def _seen(pytester: pytest.Pytester) -> dict[str, object]:
    return json.loads((pytester.path / "seen.json").read_text())  # type: ignore[no-any-return]


def test_a_bare_pytest_starts_a_broker_mints_through_it_and_stops_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(USES_THE_FIXTURES)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    seen = _seen(pytester)
    url = str(seen["url"])
    assert url.startswith("http://127.0.0.1:")
    claims, short = seen["claims"], seen["short"]
    assert claims["iss"] == url  # type: ignore[index]
    wallet = claims["agentkeys_user_wallet"]  # type: ignore[index]
    assert str(seen["run_scope"]).startswith(f"{wallet}/local-")
    assert short["exp"] - short["nbf"] == 30 + 30  # type: ignore[index, operator]
    with pytest.raises(httpx.ConnectError):  # torn down with the session
        httpx.get(f"{url}/healthz", timeout=2)


@pytest.mark.parametrize("how", ["option", "ini", "env"])
def test_a_configured_broker_is_used_and_none_is_started(
    pytester: pytest.Pytester, remote_broker: tuple[str, Path], how: str
) -> None:
    url, _ = remote_broker
    pytester.makepyfile(USES_THE_FIXTURES)
    args: list[str] = []
    if how == "option":
        args = ["--test-broker-url", url]
    elif how == "ini":
        pytester.makeini(f"[pytest]\ntest_broker_url = {url}\n")
    else:
        os.environ["TEST_BROKER_URL"] = url  # restored by _no_contract_env's monkeypatch
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    seen = _seen(pytester)
    assert (seen["url"], seen["claims"]["iss"]) == (url, url)  # type: ignore[index]


def test_a_bearer_file_makes_the_run_the_credential_s(
    pytester: pytest.Pytester, remote_broker: tuple[str, Path]
) -> None:
    url, data = remote_broker
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "credentials",
            "add",
            "--kind",
            "dev",
            "--name",
            "al",
            "--json",
        ],
        env={**os.environ, "BROKER_DATA_DIR": str(data), "BROKER_CREDENTIAL_MINTING": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    secret = pytester.path / "secret"
    secret.write_text(json.loads(added.stdout)["secret"])
    pytester.makepyfile(USES_THE_FIXTURES)
    pytester.makeini("[pytest]\ntest_broker_bearer_file = secret\n")  # relative to the ini file
    result = pytester.runpytest_subprocess("--test-broker-url", url)
    result.assert_outcomes(passed=1)
    seen = _seen(pytester)
    assert str(seen["run_scope"]).startswith("dev/al/local-")
    assert seen["claims"]["agentkeys_user_wallet"] == seen["run_scope"]  # type: ignore[index]


def test_options_are_listed_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--test-broker-url=*", "*--test-broker-bearer-file=*"])
    result.stdout.fnmatch_lines(
        ["*test_broker_url (string)*", "*test_broker_bearer_file (string)*"]
    )


def test_the_plugin_is_registered_and_loading_it_starts_nothing_heavy() -> None:
    names = {ep.value for ep in entry_points(group="pytest11")}
    assert "broker.testing.pytest_plugin" in names
    code = "import sys, json, broker.testing.pytest_plugin; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    heavy = ("starlette", "uvicorn", "boto3", "broker.server", "broker.store", "broker.config")
    assert [m for m in loaded if m.startswith(heavy)] == []
