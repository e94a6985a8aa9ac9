"""The client against a real broker: the caller's namespace, run scopes, the token cache."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt as pyjwt
import pytest

from broker.client import Client, MintedToken, config_from_env
from broker.client.tokens import SKEW_MARGIN, TokenCache
from broker.errors import BrokerRefused, ConfigError, InputFileError, ScopeNotAllowed
from broker.testing.live import LiveBroker, StartBroker
from tests.callers.test_credentials import cli

CI_VARS = (
    "GITHUB_RUN_ID",
    "GITHUB_REF",
    "GITHUB_RUN_ATTEMPT",
    "CI_PIPELINE_ID",
    "CI_MERGE_REQUEST_IID",
)
GITHUB_PR = {"GITHUB_RUN_ID": "34", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_REF": "refs/pull/12/merge"}
LOCAL = re.compile(r"local-\d{8}T\d{6}Z-[0-9a-f]{6}")


@pytest.fixture(autouse=True)
def _no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests set the CI variables they mean; a CI runner's own must not leak in."""
    for name in (*CI_VARS, "TEST_BROKER_SCOPE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def broker(live_broker: StartBroker) -> LiveBroker:
    return live_broker(credential_minting=True)


@pytest.fixture
def client_for(broker: LiveBroker) -> Iterator[Callable[..., Client]]:
    with contextlib.ExitStack() as stack:

        def make(**kwargs: object) -> Client:
            config = config_from_env({}, url=broker.url, **kwargs)  # type: ignore[arg-type]
            return stack.enter_context(contextlib.closing(Client(config)))

        yield make


def _secret(broker: LiveBroker, kind: str, name: str, pattern: str | None = None) -> str:
    args = ["credentials", "add", "--kind", kind, "--name", name]
    return str(
        cli(broker.settings.data_dir, *args, *(["--scope-pattern", pattern] if pattern else []))[
            "secret"
        ]
    )


def test_each_caller_learns_its_namespace_from_the_broker(
    broker: LiveBroker, client_for: Callable[..., Client]
) -> None:
    fed = client_for(federation_proof=True).namespace()
    assert re.fullmatch(r"0x[0-9a-f]{40}", fed.home)
    assert fed.federation
    dev = client_for(bearer=_secret(broker, "dev", "alice")).namespace()
    assert (dev.home, dev.allowance, dev.federation) == ("dev/alice", None, False)
    ci = client_for(bearer=_secret(broker, "ci", "web", "ci/web/pr-*/run-*")).namespace()
    assert (ci.home, ci.allowance, ci.federation) == ("ci/web", "ci/web/pr-*/run-*", False)


@pytest.mark.parametrize(
    ("pattern", "env", "expected"),
    [
        ("ci/web/pr-*/run-*", GITHUB_PR, "ci/web/pr-12/run-34-2"),
        ("ci/web/run-*", GITHUB_PR, "ci/web/run-34-2"),
        ("ci/web/*", GITHUB_PR, "ci/web/pr-12-run-34-2"),
        (
            "ci/web/run-*",
            {"GITHUB_RUN_ID": "34", "GITHUB_REF": "refs/heads/main"},
            "ci/web/run-34-1",
        ),
        (
            "ci/web/pr-*/run-*",
            {"CI_PIPELINE_ID": "77", "CI_MERGE_REQUEST_IID": "5"},
            "ci/web/pr-5/run-77",
        ),
        ("ci/web/**", {"CI_PIPELINE_ID": "77"}, "ci/web/run-77"),
    ],
)
def test_a_ci_run_scope_takes_the_shape_of_the_allowance(
    broker: LiveBroker,
    client_for: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
    pattern: str,
    env: dict[str, str],
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = client_for(bearer=_secret(broker, "ci", "web", pattern))
    assert client.run_scope() == expected
    assert client.default_scope() == expected
    claims = pyjwt.decode(client.get_test_jwt(), options={"verify_signature": False})
    assert claims["agentkeys_user_wallet"] == expected


def test_a_ci_run_the_allowance_cannot_hold_is_the_brokers_refusal(
    broker: LiveBroker, client_for: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "34")  # a push: no PR number for pr-*
    client = client_for(bearer=_secret(broker, "ci", "web", "ci/web/pr-*/run-*"))
    with pytest.raises(BrokerRefused, match="outside this credential's allowance 'ci/web/pr-"):
        client.run_scope()


def test_outside_ci_a_run_is_local_under_the_callers_namespace(
    broker: LiveBroker, client_for: Callable[..., Client]
) -> None:
    dev = client_for(bearer=_secret(broker, "dev", "alice"))
    home, run = dev.run_scope().rsplit("/", 1)
    assert home == "dev/alice"
    assert LOCAL.fullmatch(run)
    assert dev.run_scope() == dev.run_scope()  # one run per client
    assert dev.default_scope() is None  # `test-broker token` gives a developer their namespace
    fed = client_for(federation_proof=True)
    wallet, run = fed.run_scope().rsplit("/", 1)
    assert wallet == fed.namespace().home
    assert LOCAL.fullmatch(run)
    # A federation session can only mint its wallet; the run is a prefix below it.
    assert fed.token().scope == wallet
    assert client_for(federation_proof=True, scope="dev/x").run_scope() == "dev/x"


def test_the_same_token_is_returned_until_a_margin_before_it_expires(
    broker: LiveBroker, client_for: Callable[..., Client]
) -> None:
    client = client_for(federation_proof=True)
    now = [time.time()]
    cache = TokenCache(client.api.mint, clock=lambda: now[0])
    first = cache.get(None, 300)
    lifetime = first.expiration - now[0]
    now[0] = first.expiration - SKEW_MARGIN - 1
    assert cache.get(None, 300) is first
    now[0] = first.expiration - SKEW_MARGIN
    second = cache.get(None, 300)
    assert second.jti != first.jti
    assert cache.get(None, 60).jti not in (first.jti, second.jti)  # another TTL, another token
    # A short token is replaced at two thirds of its life, not a full margin before exp.
    now[0] = time.time()
    short = cache.get(None, 30)
    now[0] += (short.expiration - now[0]) * 2 / 3 - 1
    assert cache.get(None, 30) is short
    now[0] += 1
    assert cache.get(None, 30).jti != short.jti
    assert lifetime > SKEW_MARGIN


def test_threads_asking_at_once_share_one_mint(
    broker: LiveBroker, client_for: Callable[..., Client]
) -> None:
    client = client_for(bearer=_secret(broker, "dev", "alice"))
    mints: list[MintedToken] = []

    def counted(scope: str | None, ttl: int | None) -> MintedToken:
        mints.append(client.api.mint(scope, ttl))
        return mints[-1]

    client.tokens = TokenCache(counted)
    start = threading.Barrier(16)
    got: list[str] = []

    def ask() -> None:
        start.wait()
        got.append(client.get_test_jwt("dev/alice/run"))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert (len(got), len(set(got)), len(mints)) == (16, 1, 1)


def test_cleanup_refuses_the_root_and_anything_outside_the_callers_namespace(
    broker: LiveBroker, client_for: Callable[..., Client]
) -> None:
    client = client_for(bearer=_secret(broker, "dev", "alice"), bucket="b", role_arn="arn:r")
    for prefix in ["", "/", "dev", "dev/alicex", "dev/bob/run", "dev/alice/../bob", "0xdeadbeef"]:
        with pytest.raises(ScopeNotAllowed, match="refusing to clean up"):
            client.cleanup_scope(prefix)


def test_flags_beat_the_environment_and_a_bearer_beats_a_proof(tmp_path: Path) -> None:
    env = {
        "TEST_BROKER_URL": "http://env:1",
        "TEST_BROKER_BEARER": "otb_env",
        "TEST_BROKER_AUTH_TOKEN": "proof",
        "TEST_BROKER_SCOPE": "dev/env",
        "TEST_BROKER_ROLE_ARN": "arn:env",
        "TEST_BROKER_BUCKET": "env-bucket",
    }
    from_env = config_from_env(env)
    assert (from_env.url, from_env.bearer, from_env.proof, from_env.scope) == (
        "http://env:1",
        "otb_env",
        None,
        "dev/env",
    )
    (tmp_path / "secret").write_text("otb_file\n")
    flags = config_from_env(
        env, url="http://flag:2/", bearer_file=tmp_path / "secret", scope="dev/flag", bucket="b"
    )
    assert (flags.url, flags.bearer, flags.scope, flags.role_arn, flags.bucket) == (
        "http://flag:2",
        "otb_file",
        "dev/flag",
        "arn:env",
        "b",
    )
    proof = config_from_env(env, federation_proof=True)
    assert (proof.bearer, proof.proof) == (None, "proof")
    assert (
        config_from_env({"TEST_BROKER_URL": "http://x"}, federation_proof=True).proof
        == "federation-proof"
    )
    file_env = {"TEST_BROKER_URL": "http://x", "TEST_BROKER_BEARER_FILE": str(tmp_path / "secret")}
    assert config_from_env(file_env).bearer == "otb_file"


@pytest.mark.parametrize(
    ("env", "error", "says"),
    [
        ({}, ConfigError, "no broker URL"),
        ({"TEST_BROKER_URL": "http://x"}, ConfigError, "no credential"),
        *(
            ({"TEST_BROKER_URL": url, "TEST_BROKER_BEARER": "s"}, ConfigError, says)
            for url, says in [
                ("ftp://x", "must be http\\(s\\)://host"),
                ("http:///path", "must be http\\(s\\)://host"),
                ("http://[::1", "is not a URL: Invalid port"),
                ("http://127.0.0.1:99999", "a valid port"),
                ("http://h/?q=1", "has no query"),
            ]
        ),
        (
            {"TEST_BROKER_URL": "http://x", "TEST_BROKER_BEARER_FILE": "/nonexistent"},
            InputFileError,
            "cannot be read",
        ),
    ],
)
def test_an_unusable_config_is_one_sentence(
    env: dict[str, str], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        config_from_env(env)
