"""The pytest plugin in a GitHub Actions job with no secret: it exchanges the job's own token."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import trustme

from broker.config import Settings
from broker.testing.ci_issuer import StandInIssuer, github_token_service, stand_in_issuer
from broker.testing.live import LiveBroker, serving
from tests.testing.test_pytest_plugin import USES_THE_FIXTURES, _seen


@pytest.fixture(autouse=True)
def _no_ci_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("TEST_BROKER_", "GITHUB_", "CI_", "ACTIONS_ID_TOKEN_")):
            monkeypatch.delenv(name)


@pytest.fixture
def github(tls_ca: trustme.CA) -> Iterator[StandInIssuer]:
    with stand_in_issuer(tls_ca) as issuer:
        yield issuer


@pytest.fixture
def broker(make_settings: Callable[..., Settings], github: StandInIssuer) -> Iterator[LiveBroker]:
    def settings(url: str) -> Settings:
        table = github.table(url, scope_template="gh/{repository}/pr-{pr}/run-{run_id}")
        return make_settings(oidc_issuer=url, federation_proof=False, trusted_issuers=[table])

    with serving(settings) as live:
        yield live


def test_in_a_github_job_the_fixtures_exchange_the_job_token(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    broker: LiveBroker,
    github: StandInIssuer,
) -> None:
    with github_token_service(github, run_id="55") as service:
        for name, value in (service.env | {"TEST_BROKER_URL": broker.url}).items():
            monkeypatch.setenv(name, value)
        pytester.makepyfile(USES_THE_FIXTURES)
        pytester.runpytest_subprocess().assert_outcomes(passed=1)
    seen = _seen(pytester)
    assert seen["run_scope"] == "gh/acme/app/pr-12/run-55"
    assert seen["claims"]["agentkeys_user_wallet"] == "gh/acme/app/pr-12/run-55"  # type: ignore[index]
    assert seen["claims"]["iss"] == broker.url  # type: ignore[index]
    assert set(service.requests) == {broker.url}
