"""The pytest plugin (entry point ``pytest11``): a broker, tokens and scoped AWS for your tests.

Fixtures: ``test_broker`` (the broker URL), ``test_jwt`` (a factory: ``test_jwt(scope=None,
ttl=None) -> str``), ``run_scope`` (this run's S3 prefix), ``aws_session`` (a boto3 Session for the
run scope; its teardown deletes the run's prefix in TEST_BROKER_BUCKET, even when the test
failed), and ``test_broker_client`` (the ``broker.client.Client`` behind them).

Where the broker is: ``--test-broker-url``, else ``TEST_BROKER_URL``, else the ini key
``test_broker_url``; with none of them a broker is started once per session on a free loopback
port (federation-proof minting) and stopped at the end, so a bare ``pytest`` needs no setup. The
credential for a configured broker: ``--test-broker-bearer-file``, else the contract's variables
(``TEST_BROKER_BEARER``, ``_BEARER_FILE``, ``_AUTH_TOKEN``, or the job token a CI job offers:
GitHub Actions with ``id-token: write``, GitLab ``TEST_BROKER_ID_TOKEN``), else the ini key
``test_broker_bearer_file``, else the federation-proof flow.

Loading the plugin imports only this module and ``broker.client``; nothing starts, and nothing
changes for tests that use none of its fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from broker.client import Client, config_from_env
from broker.client.environment import BEARER_FILE_VAR, URL_VAR, credential_in_env

if TYPE_CHECKING:
    import boto3

URL_OPTION = "--test-broker-url"
BEARER_FILE_OPTION = "--test-broker-bearer-file"
URL_INI = "test_broker_url"
BEARER_FILE_INI = "test_broker_bearer_file"

TestJwt = Callable[..., str]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("test-broker", "oidc-test-broker (tokens and scoped AWS access)")
    group.addoption(
        URL_OPTION,
        dest="test_broker_url",
        default=None,
        help=f"Broker base URL (else ${URL_VAR}, else ini {URL_INI}; none: start one locally).",
    )
    group.addoption(
        BEARER_FILE_OPTION,
        dest="test_broker_bearer_file",
        default=None,
        help=f"File with a CI or personal secret (else ${BEARER_FILE_VAR}, ini {BEARER_FILE_INI}).",
    )
    parser.addini(URL_INI, f"Broker base URL ({URL_OPTION} and ${URL_VAR} win).")
    parser.addini(
        BEARER_FILE_INI, f"Bearer file, relative to the ini file ({BEARER_FILE_OPTION} wins)."
    )


def _configured_url(config: pytest.Config) -> str | None:
    value: str | None = config.getoption("test_broker_url") or os.environ.get(URL_VAR)
    return value or str(config.getini(URL_INI)) or None


def _bearer_file(config: pytest.Config) -> Path | None:
    option: str | None = config.getoption("test_broker_bearer_file")
    if option:
        return Path(option)
    if credential_in_env():
        return None  # the environment names the credential (config_from_env reads it)
    ini = str(config.getini(BEARER_FILE_INI))
    if not ini:
        return None
    base = config.inipath.parent if config.inipath else config.rootpath
    return base / ini


@pytest.fixture(scope="session")
def test_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The broker's URL: the configured one, or a broker started for this session."""
    url = _configured_url(request.config)
    if url:
        yield url.rstrip("/")
        return
    if _bearer_file(request.config) is not None:
        raise pytest.UsageError(
            f"{BEARER_FILE_OPTION} names a secret of a broker, but no broker URL is configured "
            f"({URL_OPTION}, ${URL_VAR} or ini {URL_INI})"
        )
    # Only a session that needs its own broker pays for the server stack.
    from broker.config import load_settings
    from broker.testing.live import serving

    data = tmp_path_factory.mktemp("test-broker")
    with serving(lambda issuer: load_settings(environ={}, oidc_issuer=issuer, data_dir=data)) as b:
        yield b.url


@pytest.fixture(scope="session")
def test_broker_client(request: pytest.FixtureRequest, test_broker: str) -> Iterator[Client]:
    config = request.config
    if _configured_url(config) is None:  # our own broker: its federation-proof flow
        client = Client(config_from_env(url=test_broker, federation_proof=True))
    else:
        bearer_file = _bearer_file(config)
        has_env = credential_in_env()
        client = Client(
            config_from_env(
                url=test_broker,
                bearer_file=bearer_file,
                federation_proof=bearer_file is None and not has_env,
            )
        )
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def test_jwt(test_broker_client: Client) -> TestJwt:
    """``test_jwt(scope=None, ttl=None)``: a JWT for ``scope`` (default: the run scope)."""

    def get(scope: str | None = None, ttl: int | None = None) -> str:
        return test_broker_client.get_test_jwt(scope, ttl)

    return get


# Fixture names are the contract (design.md); the functions are named apart from broker.client's.
@pytest.fixture(name="run_scope", scope="session")
def run_scope_fixture(test_broker_client: Client) -> str:
    """This run's prefix: TEST_BROKER_SCOPE, the CI run's, or ``<namespace>/local-…``."""
    return test_broker_client.run_scope()


@pytest.fixture(name="aws_session")
def aws_session_fixture(test_broker_client: Client, run_scope: str) -> Iterator[boto3.Session]:
    """A boto3 Session for the run scope (TEST_BROKER_ROLE_ARN); afterwards, pass or fail, every
    object under the run's prefix in TEST_BROKER_BUCKET is deleted."""
    session = test_broker_client.aws_session(run_scope)
    try:
        yield session
    finally:
        test_broker_client.cleanup_scope(run_scope, session=session)
