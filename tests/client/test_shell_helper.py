"""The shell helper (broker/client/test-broker.sh) in real bash, against a real broker.

Each test runs ``eval "$(test-broker shell-init)"`` in a fresh bash, so the console script that
prints the helper is exercised too; the broker is a live one on a free loopback port.
"""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt as pyjwt
import pytest
import trustme

from broker.client import Client, config_from_env, runs
from broker.config import Settings
from broker.testing.ci_issuer import StandInIssuer, github_token_service, stand_in_issuer
from broker.testing.live import LiveBroker, StartBroker, free_loopback_url, serving
from tests.callers.test_credentials import cli

pytestmark = pytest.mark.integration  # bash, curl, jq and shellcheck against a live broker

BIN = Path(sys.executable).parent
HELPER = Path(__file__).parents[2] / "broker" / "client" / "test-broker.sh"
# What a CI runner or a developer's shell may have set that the helper reads.
_CI_VARIABLES = (
    "GITHUB_",
    "GITLAB_",
    "CI_",
    "TEST_BROKER_",
    "RUNNER_",
    "XDG_RUNTIME_DIR",
    "ACTIONS_ID_TOKEN_",
)


def bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_CI_VARIABLES)}
    base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", f'eval "$(test-broker shell-init)" || exit 99\n{script}'],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def broker(live_broker: StartBroker) -> LiveBroker:
    return live_broker(credential_minting=True)


@pytest.fixture
def env(broker: LiveBroker, tmp_path: Path) -> dict[str, str]:
    return {
        "TEST_BROKER_URL": broker.url,
        "TEST_BROKER_AUTH_TOKEN": "federation-proof",
        "TEST_BROKER_CACHE_DIR": str(tmp_path / "cache"),
    }


def claims(token: str) -> dict[str, object]:
    return pyjwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def test_helper_is_shellcheck_clean() -> None:
    run = subprocess.run(
        [str(BIN / "shellcheck"), "--severity=style", str(HELPER)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout


def test_get_test_jwt_caches_the_token_in_a_private_file(env: dict[str, str]) -> None:
    run = bash("get_test_jwt; get_test_jwt; test_broker_token_file", env)
    assert run.returncode == 0, run.stderr
    first, second, file = run.stdout.splitlines()
    assert first == second  # the second call read the cache
    assert claims(first)["agentkeys_user_wallet"] == claims(first)["sub"].removeprefix(  # type: ignore[union-attr]
        "agentkeys:agent:"
    )
    path = Path(file)
    assert path.read_text() == first  # the raw JWT: usable as AWS_WEB_IDENTITY_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def fake_jwt(*, iat: int, exp: int) -> str:
    # The helper reads exp and iat only (the broker and STS check signatures, not the cache).
    return pyjwt.encode({"iat": iat, "exp": exp}, "k" * 32)


# (iat, exp) relative to now, and whether the cached token is still used.
CACHED = [
    pytest.param((-10, 290), True, id="fresh"),
    pytest.param((-30, 60), True, id="short-lived-before-two-thirds"),  # 60 s rule would mint
    pytest.param((-250, 50), False, id="within-60-s-of-exp"),
    pytest.param((-75, 15), False, id="short-lived-past-two-thirds"),
    pytest.param((-400, -100), False, id="expired"),
    pytest.param(None, False, id="damaged"),
]


@pytest.mark.parametrize(("times", "kept"), CACHED)
def test_get_test_jwt_mints_again_when_the_cached_token_is_due(
    env: dict[str, str], times: tuple[int, int] | None, kept: bool
) -> None:
    now = int(time.time())
    cached = "not a jwt" if times is None else fake_jwt(iat=now + times[0], exp=now + times[1])
    # One shell: outside CI each shell is a run of its own, with its own cache file.
    run = bash(f"f=$(test_broker_token_file); printf %s {cached!r} > $f; get_test_jwt; cat $f", env)
    assert run.returncode == 0, run.stderr
    token, in_file = run.stdout.splitlines()
    assert (token == cached) is kept
    assert in_file == token


def test_get_test_jwt_asks_for_the_lifetime_given(env: dict[str, str]) -> None:
    run = bash("get_test_jwt", env | {"TEST_BROKER_TTL": "120"})
    assert run.returncode == 0, run.stderr
    token = claims(run.stdout.strip())
    assert token["exp"] - token["iat"] <= 120 + 30  # type: ignore[operator]


@pytest.mark.parametrize("ttl", ["abc", "1.5", "-5", "0", "12s"])
def test_a_ttl_that_is_no_whole_seconds_is_one_line(env: dict[str, str], ttl: str) -> None:
    run = bash("get_test_jwt", env | {"TEST_BROKER_TTL": ttl})
    assert run.returncode != 0
    assert run.stdout == ""
    assert run.stderr == (
        f"test-broker: TEST_BROKER_TTL '{ttl}' is not a positive whole number of seconds, e.g. 900\n"
    )


@pytest.fixture
def echo_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP server that records each request's headers (the 'gateway' with_auth calls)."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"pong")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_with_auth_adds_the_bearer_header_and_keeps_the_token_out_of_argv(
    env: dict[str, str], echo_server: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    url, seen = echo_server
    # A curl first on PATH that records its arguments, then runs the real one.
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "curl").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" >> {tmp_path}/argv\nexec /usr/bin/curl "$@"\n'
    )
    (spy / "curl").chmod(0o755)
    run = bash(f"PATH={spy}:$PATH; with_auth curl -sf {url}/ping; echo; get_test_jwt", env)
    assert run.returncode == 0, run.stderr
    answer, token = run.stdout.splitlines()
    assert answer == "pong"
    assert seen[-1]["Authorization"] == f"Bearer {token}"
    assert token not in (tmp_path / "argv").read_text()


def test_with_auth_refuses_a_command_that_is_not_curl(env: dict[str, str]) -> None:
    run = bash("with_auth wget http://127.0.0.1:1/", env)
    assert run.returncode == 2
    assert run.stderr.startswith("test-broker: with_auth runs a curl command")


def test_broker_refusal_is_one_line_with_its_code(env: dict[str, str]) -> None:
    run = bash("get_test_jwt", env | {"TEST_BROKER_BEARER": "otb_ci_000000000000_" + "A" * 43})
    assert run.returncode != 0
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith(
        "test-broker: the broker refused /v1/mint-oidc-jwt (401 unauthorized"
    )


def test_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    env = {
        "TEST_BROKER_URL": free_loopback_url(),
        "TEST_BROKER_AUTH_TOKEN": "federation-proof",
        "TEST_BROKER_CACHE_DIR": str(tmp_path),
    }
    run = bash("get_test_jwt", env)
    assert run.returncode != 0
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(
        f"test-broker: cannot reach the broker at {env['TEST_BROKER_URL']}"
    )


def test_missing_url_is_one_line(tmp_path: Path) -> None:
    run = bash(
        "get_test_jwt",
        {"TEST_BROKER_AUTH_TOKEN": "federation-proof", "TEST_BROKER_CACHE_DIR": str(tmp_path)},
    )
    assert run.returncode != 0
    assert run.stderr == "test-broker: no broker URL: set TEST_BROKER_URL\n"


@pytest.mark.parametrize("command", ["get_test_jwt", "test_run_scope", "cleanup_test_scope"])
def test_missing_credential_is_one_line(env: dict[str, str], command: str) -> None:
    run = bash(command, {**env, "TEST_BROKER_AUTH_TOKEN": ""})
    assert run.returncode != 0
    assert run.stderr.startswith("test-broker: no credential: set TEST_BROKER_BEARER")
    assert len(run.stderr.splitlines()) == 1


def test_a_cache_directory_owned_by_someone_else_is_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    run = bash("get_test_jwt", env | {"TEST_BROKER_CACHE_DIR": str(tmp_path / "link")})
    assert run.returncode != 0
    assert "is not a directory owned by you" in run.stderr
    assert list(elsewhere.iterdir()) == []


GITHUB_PR = {"GITHUB_RUN_ID": "34", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_REF": "refs/pull/12/merge"}
GITLAB_MR = {"GITLAB_CI": "true", "CI_PIPELINE_ID": "77", "CI_MERGE_REQUEST_IID": "5"}
CI_RUNS = [
    pytest.param(GITHUB_PR, "ci/web/pr-*/run-*", "ci/web/pr-12/run-34-2", id="github-pr"),
    pytest.param(GITHUB_PR, "ci/web/run-*", "ci/web/run-34-2", id="github-pr-run-only-pattern"),
    pytest.param(GITHUB_PR, "ci/web/*", "ci/web/pr-12-run-34-2", id="github-pr-one-segment"),
    pytest.param(
        {"GITHUB_RUN_ID": "34", "GITHUB_REF": "refs/heads/main"},
        "ci/web/run-*",
        "ci/web/run-34-1",
        id="github-push",
    ),
    pytest.param(GITLAB_MR, "ci/web/pr-*/run-*", "ci/web/pr-5/run-77", id="gitlab-mr"),
]


@pytest.mark.parametrize(("ci", "pattern", "expected"), CI_RUNS)
def test_run_scope_is_the_ci_run_in_the_shape_the_allowance_takes(
    broker: LiveBroker, env: dict[str, str], ci: dict[str, str], pattern: str, expected: str
) -> None:
    data = broker.settings.data_dir
    added = cli(
        data, "credentials", "add", "--kind", "ci", "--name", "web", "--scope-pattern", pattern
    )
    run = bash(
        "test_run_scope; get_test_jwt", env | ci | {"TEST_BROKER_BEARER": str(added["secret"])}
    )
    assert run.returncode == 0, run.stderr
    scope, token = run.stdout.splitlines()
    assert scope == expected
    assert claims(token)["agentkeys_user_wallet"] == expected
    # The Python client names the same run the same way (cleanup steps may use either).
    python = Client(config_from_env({"TEST_BROKER_URL": broker.url}, bearer=str(added["secret"])))
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in ci.items():
                mp.setenv(name, value)
            assert python.run_scope() == expected
    finally:
        python.close()


@pytest.mark.parametrize(
    "scope", ["ci/web/pr-12/run-34-2", "0xab/local-x", "a:b", "x", "d/" + "a" * 80, "-/-"]
)
def test_session_names_match_the_python_client(scope: str, env: dict[str, str]) -> None:
    run = bash(f"_test_broker_session_name {scope!r}", env)
    assert run.stdout == runs.session_name(scope)


def test_local_run_scope_is_stable_within_a_shell_and_new_in_the_next(
    broker: LiveBroker, env: dict[str, str]
) -> None:
    secret = str(
        cli(broker.settings.data_dir, "credentials", "add", "--kind", "dev", "--name", "ana")[
            "secret"
        ]
    )
    env = env | {"TEST_BROKER_BEARER": secret}
    run = bash("test_run_scope; test_run_scope", env)
    assert run.returncode == 0, run.stderr
    first, second = run.stdout.splitlines()
    assert first == second
    assert first.startswith("dev/ana/local-")
    again = bash("test_run_scope", env)
    assert again.stdout.strip() != first


@pytest.mark.parametrize("prefix", ["", "/", "/abs", "a/../b", "..", "a//b", "a b", "*"])
def test_cleanup_refuses_a_prefix_that_is_no_run_scope(env: dict[str, str], prefix: str) -> None:
    env = env | {"TEST_BROKER_BUCKET": "oidc-test-bucket", "TEST_BROKER_ROLE_ARN": "arn:x"}
    if prefix == "":
        env["TEST_BROKER_SCOPE"] = "/"
    run = bash(f"cleanup_test_scope {json.dumps(prefix)}", env)
    assert run.returncode != 0
    assert run.stderr.startswith("test-broker: refusing to clean up the prefix"), run.stderr


@pytest.fixture
def fake_aws(tmp_path: Path) -> tuple[Path, Path]:
    """A directory with an ``aws`` that records its environment and arguments (no AWS call)."""
    bin_dir, record = tmp_path / "fake-aws", tmp_path / "aws-record"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(f'#!/bin/sh\n{{ env; echo "ARGV=$*"; }} > {record}\n')
    (bin_dir / "aws").chmod(0o755)
    return bin_dir, record


# What would take precedence over web identity in the AWS credential chain.
AMBIENT_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAADMIN",
    "AWS_SECRET_ACCESS_KEY": "admin-secret",
    "AWS_SESSION_TOKEN": "admin-session",
    "AWS_PROFILE": "admin",
    "AWS_DEFAULT_PROFILE": "admin",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-token",
}


def test_cleanup_runs_aws_with_only_the_web_identity_role(
    env: dict[str, str], fake_aws: tuple[Path, Path]
) -> None:
    bin_dir, record = fake_aws
    env = env | AMBIENT_AWS | {"TEST_BROKER_BUCKET": "oidc-test-b", "TEST_BROKER_ROLE_ARN": "arn:r"}
    run = bash(f"PATH={bin_dir}:$PATH; cleanup_test_scope; test_run_scope", env)
    assert run.returncode == 0, run.stderr
    seen = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line)
    assert not set(AMBIENT_AWS) & set(seen), seen
    assert seen["AWS_ROLE_ARN"] == "arn:r"
    assert Path(seen["AWS_WEB_IDENTITY_TOKEN_FILE"]).read_text().count(".") == 2  # the JWT
    scope = run.stdout.strip()
    assert seen["ARGV"] == f"s3 rm --recursive --only-show-errors s3://oidc-test-b/{scope}/"


@pytest.mark.parametrize("outside", ["prefix", "TEST_BROKER_SCOPE"])
def test_cleanup_refuses_a_prefix_outside_the_callers_scope(
    env: dict[str, str], fake_aws: tuple[Path, Path], outside: str
) -> None:
    bin_dir, record = fake_aws
    env = env | {"TEST_BROKER_BUCKET": "oidc-test-b", "TEST_BROKER_ROLE_ARN": "arn:r"}
    command = "cleanup_test_scope"
    if outside == "prefix":
        command += " someone-else/run-1"
    else:
        env["TEST_BROKER_SCOPE"] = "someone-else/run-1"
    run = bash(f"PATH={bin_dir}:$PATH; {command}", env)
    assert run.returncode != 0
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(
        "test-broker: refusing to clean up the prefix 'someone-else/run-1': it is outside"
    )
    assert not record.exists()


TEMPLATE = "gh/{repository}/pr-{pr}/run-{run_id}-{run_attempt}"


@pytest.fixture(scope="module")
def github(tls_ca: trustme.CA) -> Iterator[StandInIssuer]:
    with stand_in_issuer(tls_ca, preset="github-actions") as issuer:
        yield issuer


@pytest.fixture(scope="module")
def gitlab(tls_ca: trustme.CA) -> Iterator[StandInIssuer]:
    with stand_in_issuer(tls_ca, preset="gitlab") as issuer:
        yield issuer


@pytest.fixture
def exchange_broker(
    make_settings: Callable[..., Settings], github: StandInIssuer, gitlab: StandInIssuer
) -> Iterator[LiveBroker]:
    """A broker trusting both CI providers, the job tokens' audience being its own URL."""

    def settings(url: str) -> Settings:
        tables = [github.table(url, scope_template=TEMPLATE), gitlab.table(url)]
        return make_settings(oidc_issuer=url, federation_proof=False, trusted_issuers=tables)

    with serving(settings) as live:
        yield live


def test_a_github_job_without_a_secret_exchanges_its_own_token(
    exchange_broker: LiveBroker, github: StandInIssuer, tmp_path: Path
) -> None:
    with github_token_service(github) as service:
        env = service.env | {
            "TEST_BROKER_URL": exchange_broker.url,
            "TEST_BROKER_CACHE_DIR": str(tmp_path),
        }
        run = bash("get_test_jwt; test_run_scope; get_test_jwt", env)
        assert run.returncode == 0, run.stderr
        first, scope, second = run.stdout.splitlines()
        python = Client(config_from_env(env))
        try:
            assert python.run_scope() == scope  # the same run, whichever client asks
        finally:
            python.close()
    assert scope == "gh/acme/app/pr-12/run-3401-1"
    assert first == second  # cached like any token
    assert claims(first)["agentkeys_user_wallet"] == scope
    assert set(service.requests) == {exchange_broker.url}  # the audience: the broker's URL


def test_a_gitlab_job_exchanges_its_id_token(
    exchange_broker: LiveBroker, gitlab: StandInIssuer, tmp_path: Path
) -> None:
    env = {
        "TEST_BROKER_URL": exchange_broker.url,
        "TEST_BROKER_CACHE_DIR": str(tmp_path),
        "TEST_BROKER_ID_TOKEN": gitlab.token(exchange_broker.url),
    }
    run = bash("test_run_scope; get_test_jwt", env)
    assert run.returncode == 0, run.stderr
    scope, token = run.stdout.splitlines()
    assert scope.startswith("gl/acme/app/")
    assert claims(token)["agentkeys_user_wallet"] == scope


@pytest.mark.parametrize("command", ["get_test_jwt", "test_run_scope"])
def test_a_job_with_a_ttl_that_is_no_whole_seconds_is_told_so(
    exchange_broker: LiveBroker, gitlab: StandInIssuer, tmp_path: Path, command: str
) -> None:
    env = {
        "TEST_BROKER_URL": exchange_broker.url,
        "TEST_BROKER_CACHE_DIR": str(tmp_path),
        "TEST_BROKER_ID_TOKEN": gitlab.token(exchange_broker.url),
        "TEST_BROKER_TTL": "abc",
    }
    run = bash(command, env)
    assert run.returncode != 0
    assert run.stdout == ""
    assert run.stderr == (
        "test-broker: TEST_BROKER_TTL 'abc' is not a positive whole number of seconds, e.g. 900\n"
    )


def test_a_refused_job_token_is_one_line(
    exchange_broker: LiveBroker, gitlab: StandInIssuer, tmp_path: Path
) -> None:
    env = {
        "TEST_BROKER_URL": exchange_broker.url,
        "TEST_BROKER_CACHE_DIR": str(tmp_path),
        "TEST_BROKER_ID_TOKEN": gitlab.token("https://someone-else.example"),
    }
    run = bash("get_test_jwt", env)
    assert run.returncode != 0
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(
        "test-broker: the broker refused /v1/token-exchange (400 invalid_grant"
    )


def test_a_job_without_id_token_permission_is_told_so(
    exchange_broker: LiveBroker, github: StandInIssuer, tmp_path: Path
) -> None:
    with github_token_service(github) as service:
        env = service.env | {
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "wrong",
            "TEST_BROKER_URL": exchange_broker.url,
            "TEST_BROKER_CACHE_DIR": str(tmp_path),
        }
        run = bash("get_test_jwt", env)
    assert run.returncode != 0
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert "does the job have permissions: id-token: write?" in run.stderr
