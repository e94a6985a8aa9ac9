"""CI bearers mint inside their pattern, personal secrets under dev/<name>; never narrowed silently."""

from __future__ import annotations

import time
from contextlib import closing

import jwt as pyjwt
import pytest
from click.testing import CliRunner

from broker.callers import credentials
from broker.callers.claims import VERIFIER_CLOCK_LAG_SECONDS as LAG
from broker.main import main
from broker.store import open_store
from broker.testing.live import LiveBroker, StartBroker
from tests.callers.test_credentials import cli, mint


@pytest.fixture
def broker(live_broker: StartBroker) -> LiveBroker:
    return live_broker(credential_minting=True)


@pytest.fixture
def ci_secret(broker: LiveBroker) -> str:
    return str(
        cli(
            broker.settings.data_dir,
            "credentials",
            "add",
            "--kind",
            "ci",
            "--name",
            "web",
            "--scope-pattern",
            "ci/web/pr-*/run-*",
            "--max-ttl",
            "900",
            "--tag",
            "team=platform",
        )["secret"]
    )


TAGS = "https://aws.amazon.com/tags"


def claims(resp) -> dict[str, object]:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.text
    return pyjwt.decode(resp.json()["jwt"], options={"verify_signature": False})  # type: ignore[no-any-return]


def test_ci_mints_inside_its_pattern(broker: LiveBroker, ci_secret: str) -> None:
    resp = mint(broker, ci_secret, scope="ci/web/pr-12/run-34")
    body = resp.json()
    assert body["scope"] == "ci/web/pr-12/run-34"
    tags = claims(resp)["https://aws.amazon.com/tags"]["principal_tags"]  # type: ignore[index]
    assert tags == {
        "agentkeys_user_wallet": ["ci/web/pr-12/run-34"],
        "caller": ["ci"],
        "team": ["platform"],
    }
    assert body["principal_tags"] == tags


@pytest.mark.parametrize(
    "scope", ["ci/web/pr-12", "ci/web/pr-12/run-34/x", "ci/api/pr-1/run-1", "dev/web", "0xdeadbeef"]
)
def test_ci_outside_its_pattern_is_403(broker: LiveBroker, ci_secret: str, scope: str) -> None:
    resp = mint(broker, ci_secret, scope=scope)
    assert (resp.status_code, resp.json()["error"]) == (403, "scope_not_allowed")


@pytest.mark.parametrize(
    "scope", ["ci/web/pr-1/../run-1", "/ci/web", "ci/web/", "ci//web", "ci/web/pr 1", "a" * 300]
)
def test_malformed_scope_is_400(broker: LiveBroker, ci_secret: str, scope: str) -> None:
    resp = mint(broker, ci_secret, scope=scope)
    assert resp.status_code == 400
    assert resp.json()["error"] in ("scope_malformed", "invalid_request")


def test_ci_must_name_a_scope_and_is_told_its_allowance(broker: LiveBroker, ci_secret: str) -> None:
    # broker.client learns the caller's ci/<name> from this body, without parsing the message.
    resp = mint(broker, ci_secret)
    assert resp.status_code == 400
    assert resp.json() | {"message": "-"} == {
        "error": "scope_malformed",
        "message": "-",
        "allowance": "ci/web/pr-*/run-*",
    }


def test_a_refused_scope_names_the_allowance_but_a_federation_refusal_does_not(
    broker: LiveBroker, ci_secret: str
) -> None:
    refused = mint(broker, ci_secret, scope="ci/web/other").json()
    assert (refused["error"], refused["allowance"]) == ("scope_not_allowed", "ci/web/pr-*/run-*")
    session = broker.client.post("/session/create", json={"auth_token": "x"}).json()["session"]
    foreign = mint(broker, session, scope="0xdeadbeef").json()
    assert sorted(foreign) == ["error", "message"]


def test_a_ten_second_token_is_the_shortest(broker: LiveBroker, ci_secret: str) -> None:
    scope = "ci/web/pr-1/run-1"
    assert mint(broker, ci_secret, scope=scope, ttl_seconds=9).status_code == 400
    short = claims(mint(broker, ci_secret, scope=scope, ttl_seconds=10))
    assert short["exp"] - short["iat"] == 10 + LAG  # type: ignore[operator]


def test_ttl_above_the_credential_cap_is_refused(broker: LiveBroker, ci_secret: str) -> None:
    resp = mint(broker, ci_secret, scope="ci/web/pr-1/run-1", ttl_seconds=1800)
    assert (resp.status_code, resp.json()["error"]) == (400, "ttl_too_long")
    ok = claims(mint(broker, ci_secret, scope="ci/web/pr-1/run-1", ttl_seconds=900))
    assert ok["exp"] - ok["iat"] == 900 + LAG  # type: ignore[operator]


def test_dev_gets_its_home_by_default_and_sub_prefixes(broker: LiveBroker) -> None:
    secret = str(
        cli(broker.settings.data_dir, "credentials", "add", "--kind", "dev", "--name", "alice")[
            "secret"
        ]
    )
    assert mint(broker, secret).json()["scope"] == "dev/alice"
    assert mint(broker, secret, scope="dev/alice/exp-1").json()["scope"] == "dev/alice/exp-1"
    assert mint(broker, secret, scope="dev/alice2").status_code == 403
    assert claims(mint(broker, secret))["sub"] == "agentkeys:agent:dev/alice"


def test_without_a_ttl_a_low_capped_caller_gets_its_cap(broker: LiveBroker) -> None:
    # The default TTL (300 s) is above this caller's cap: it gets the cap, not a 400.
    assert broker.settings.token_ttl_seconds > 120
    added = cli(
        broker.settings.data_dir,
        *("credentials", "add", "--kind", "dev", "--name", "bob", "--max-ttl", "120"),
    )
    secret = str(added["secret"])
    token = claims(mint(broker, secret))
    assert token["exp"] - token["iat"] == 120 + LAG  # type: ignore[operator]


def test_extra_tags_never_replace_the_scope_or_caller_tag(broker: LiveBroker) -> None:
    # The CLI refuses such tags; a row written some other way must still not move the scope.
    with closing(open_store(broker.settings.data_dir)) as store:
        _, secret = credentials.add(
            store,
            kind="ci",
            name="sneaky",
            max_ttl=600,
            extra_tags={"agentkeys_user_wallet": "ci/web/pr-1/run-1", "caller": "fed"},
            now=int(time.time()),
        )
        _, case_variant = credentials.add(
            store,
            kind="ci",
            name="sneaky2",
            max_ttl=600,
            extra_tags={"Agentkeys_User_Wallet": "ci/web/pr-1/run-1"},
            now=int(time.time()),
        )
    tags = claims(mint(broker, secret, scope="ci/sneaky/x"))[TAGS]["principal_tags"]  # type: ignore[index]
    assert tags == {"agentkeys_user_wallet": ["ci/sneaky/x"], "caller": ["ci"]}
    refused = mint(broker, case_variant, scope="ci/sneaky2/x")
    assert (refused.status_code, refused.json()["error"]) == (400, "sts_rule_violation")
    assert "tags.duplicate_keys" in refused.json()["message"]


@pytest.mark.parametrize("tag", ["agentkeys_user_wallet=ci/other", "CALLER=fed", "a=1 --tag A=2"])
def test_the_cli_refuses_tags_the_broker_sets_or_case_duplicates(
    broker: LiveBroker, tag: str
) -> None:
    args = ["credentials", "add", "--kind", "ci", "--name", "web"]
    for pair in tag.split(" --tag "):
        args += ["--tag", pair]
    result = CliRunner().invoke(main, args, env={"BROKER_DATA_DIR": str(broker.settings.data_dir)})
    assert result.exit_code == 1
    assert "tag keys are unique ignoring case" in result.output


def test_a_pattern_with_two_stars_in_a_segment_is_refused(broker: LiveBroker) -> None:
    # Several '*' in one segment compile to a regex that backtracks exponentially on a long scope.
    args = ["credentials", "add", "--kind", "ci", "--name", "web", "--scope-pattern"]
    env = {"BROKER_DATA_DIR": str(broker.settings.data_dir)}
    result = CliRunner().invoke(main, [*args, "ci/web/*-*"], env=env)
    assert result.exit_code == 1
    assert "at most one '*' per segment" in result.output
    assert CliRunner().invoke(main, [*args, "ci/web/pr-*/*"], env=env).exit_code == 0
