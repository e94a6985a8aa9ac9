"""Clients in a CI job with no secret: the job's OIDC token is fetched (GitHub) or read (GitLab)
and exchanged at /v1/token-exchange; a live broker trusts a stand-in provider over https."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from broker.client import Client, config_from_env
from broker.client.ci_token import MAX_RETRIES, GitHubActions, backoff
from broker.config import Settings
from broker.errors import BrokerUnavailable, ConfigError
from broker.main import main
from broker.testing.ci_issuer import StandInIssuer, github_token_service, stand_in_issuer
from broker.testing.live import LiveBroker, serving

TEMPLATE = "gh/{repository}/pr-{pr}/run-{run_id}-{run_attempt}"
SCOPE = "gh/acme/app/pr-12/run-3401-1"


@pytest.fixture(autouse=True)
def _no_ci_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("TEST_BROKER_", "GITHUB_", "CI_", "ACTIONS_ID_TOKEN_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def github(tls_ca: trustme.CA) -> Iterator[StandInIssuer]:
    with stand_in_issuer(tls_ca, preset="github-actions") as issuer:
        yield issuer


@pytest.fixture(scope="module")
def gitlab(tls_ca: trustme.CA) -> Iterator[StandInIssuer]:
    with stand_in_issuer(tls_ca, preset="gitlab") as issuer:
        yield issuer


@pytest.fixture
def broker(
    make_settings: Callable[..., Settings], github: StandInIssuer, gitlab: StandInIssuer
) -> Iterator[LiveBroker]:
    """A broker trusting both providers, each job's audience being the broker's own URL (what
    clients ask for by default), which is known once its port is bound."""

    def settings(url: str) -> Settings:
        tables = [github.table(url, scope_template=TEMPLATE), gitlab.table(url)]
        return make_settings(oidc_issuer=url, federation_proof=False, trusted_issuers=tables)

    with serving(settings) as live:
        yield live


def test_backoff_follows_githubs_toolkit() -> None:
    assert [backoff(n) for n in (1, 2, 3, 10, 11)] == [0.01, 0.02, 0.04, 5.12, 5.12]


def test_a_github_job_without_a_secret_gets_its_run_token(
    broker: LiveBroker, github: StandInIssuer
) -> None:
    with github_token_service(github) as service:
        client = Client(config_from_env(service.env | {"TEST_BROKER_URL": broker.url}))
        try:
            assert client.config.exchange
            jwt = client.get_test_jwt()
            assert client.run_scope() == SCOPE
            assert client.get_test_jwt() == jwt  # cached like any token
        finally:
            client.close()
    assert set(service.requests) == {broker.url}  # asked for the broker URL, fresh each time


def test_a_bearer_in_the_environment_beats_the_job_token(github: StandInIssuer) -> None:
    with github_token_service(github) as service:
        env = service.env | {"TEST_BROKER_URL": "http://b.test", "TEST_BROKER_BEARER": "otb_x"}
        config = config_from_env(env)
    assert (config.bearer, config.subject) == ("otb_x", None)


def test_the_token_service_is_retried_as_githubs_toolkit_does(github: StandInIssuer) -> None:
    waited: list[float] = []
    with github_token_service(github, failures=[503, 502, 504]) as service:
        source = GitHubActions(
            request_url=service.env["ACTIONS_ID_TOKEN_REQUEST_URL"],
            request_token=service.env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"],
            audience="https://b.test",
            sleep=waited.append,
        )
        assert source.fetch().count(".") == 2
    assert waited == [0.01, 0.02, 0.04]
    assert service.requests == ["https://b.test"] * 4


def test_the_token_service_gives_up_after_ten_retries_and_never_retries_a_4xx(
    github: StandInIssuer,
) -> None:
    for failures, asked in (([503] * (MAX_RETRIES + 1), MAX_RETRIES + 1), ([403], 1)):
        with github_token_service(github, failures=failures) as service:
            source = GitHubActions(
                request_url=service.env["ACTIONS_ID_TOKEN_REQUEST_URL"],
                request_token=service.env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"],
                audience="a",
                sleep=lambda _: None,
            )
            with pytest.raises(BrokerUnavailable, match="id-token: write"):
                source.fetch()
        assert len(service.requests) == asked


def test_token_github_actions_prints_the_exchanged_token(
    broker: LiveBroker, github: StandInIssuer
) -> None:
    with github_token_service(github, run_id="77") as service:
        result = CliRunner().invoke(
            main, ["token", "--github-actions", "--broker", broker.url, "--json"], env=service.env
        )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scope"] == "gh/acme/app/pr-12/run-77-1"


def test_token_github_actions_outside_a_job_is_one_line(broker: LiveBroker) -> None:
    result = CliRunner().invoke(main, ["token", "--github-actions", "--broker", broker.url])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "id-token: write" in result.stderr


def test_a_gitlab_job_token_from_a_variable_or_a_file(
    broker: LiveBroker, gitlab: StandInIssuer, tmp_path: Path
) -> None:
    job = gitlab.token(broker.url)
    auto = Client(config_from_env({"TEST_BROKER_URL": broker.url, "TEST_BROKER_ID_TOKEN": job}))
    try:
        assert auto.run_scope() == "gl/acme/app/-/pipeline-574-job-302"
    finally:
        auto.close()
    named = CliRunner().invoke(
        main,
        ["token", "--broker", broker.url, "--subject-token-env", "MY_ID_TOKEN", "--json"],
        env={"MY_ID_TOKEN": job},
    )
    assert json.loads(named.stdout)["scope"] == "gl/acme/app/-/pipeline-574-job-302"
    (tmp_path / "id.jwt").write_text(job + "\n")
    from_file = CliRunner().invoke(
        main,
        ["token", "--broker", broker.url, "--subject-token-file", str(tmp_path / "id.jwt")],
    )
    assert from_file.exit_code == 0, from_file.output
    assert from_file.stdout.count(".") == 2


def test_a_refused_job_token_is_the_brokers_word(broker: LiveBroker, gitlab: StandInIssuer) -> None:
    fork = gitlab.token(broker.url, project_path="mallory/app")
    result = CliRunner().invoke(
        main, ["token", "--broker", broker.url, "--subject-token-env", "T"], env={"T": fork}
    )
    assert result.exit_code == 1
    assert "invalid_grant" in result.stderr or "does not match" in result.stderr


def test_two_job_token_sources_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="give one of"):
        config_from_env(
            {"TEST_BROKER_URL": "http://b.test", "X": "t"},
            subject_token_env="X",
            subject_token_file="f",
        )
