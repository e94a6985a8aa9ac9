"""Credentials: printed once, stored hashed, verified in constant time, identical 401s, rotation."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from types import FrameType

import pytest
from click.testing import CliRunner

from broker.callers import credentials
from broker.main import main
from broker.store import open_store
from broker.store.sqlite import SqliteStore, connect
from broker.testing.live import LiveBroker, StartBroker

MINT = "/v1/mint-oidc-jwt"


def cli(data: Path, *args: str) -> dict[str, object]:
    result = CliRunner().invoke(main, [*args, "--json"], env={"BROKER_DATA_DIR": str(data)})
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def mint(broker: LiveBroker, secret: str, **body: object):  # type: ignore[no-untyped-def]
    return broker.client.post(MINT, headers={"Authorization": f"Bearer {secret}"}, json=body)


@pytest.fixture
def broker(live_broker: StartBroker) -> LiveBroker:
    return live_broker(credential_minting=True)


def test_new_secret_is_printed_once_with_a_scannable_prefix(broker: LiveBroker) -> None:
    data = broker.settings.data_dir
    added = cli(data, "credentials", "add", "--kind", "ci", "--name", "web")
    secret = str(added["secret"])
    assert re.fullmatch(r"otb_ci_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", secret)
    assert {"id", "kind", "name", "scope_pattern", "max_ttl"} <= set(added)
    listing = json.dumps(cli(data, "credentials", "list"))
    assert secret not in listing
    assert "secret" not in listing
    assert "hash" not in listing
    # only a hash is stored: the secret's bytes appear nowhere in the data dir (read by a child
    # process: an open/close of the database here would drop the live broker's SQLite locks)
    grep = subprocess.run(["grep", "-rlF", secret, str(data)], check=False, capture_output=True)
    assert grep.returncode == 1, grep.stdout.decode()


def test_unknown_wrong_revoked_and_expired_get_identical_401(broker: LiveBroker) -> None:
    data = broker.settings.data_dir
    good = str(cli(data, "credentials", "add", "--kind", "dev", "--name", "alice")["secret"])
    revoked = cli(data, "credentials", "add", "--kind", "dev", "--name", "bob")
    cli(data, "credentials", "revoke", str(revoked["id"]))
    with closing(open_store(data)) as store:  # the CLI gives at least a day
        _, expired_secret = credentials.add(
            store,
            kind="dev",
            name="carol",
            max_ttl=600,
            expires_at=int(time.time()) - 1,
            now=int(time.time()) - 60,
        )
    expired = {"secret": expired_secret}
    prefix, _, rest = good.rpartition("_")
    bad = {
        "unknown id": "otb_dev_000000000000_" + rest,
        "wrong secret": prefix + "_" + ("A" * 43),
        "revoked": str(revoked["secret"]),
        "expired": str(expired["secret"]),
        "kind mismatch": good.replace("otb_dev_", "otb_ci_"),
        "not a credential": "hello",
    }
    assert mint(broker, good).status_code == 200
    answers = {name: mint(broker, secret) for name, secret in bad.items()}
    reference = answers["unknown id"]
    assert reference.status_code == 401
    for name, resp in answers.items():
        assert (resp.status_code, resp.content, resp.headers.get("www-authenticate")) == (
            reference.status_code,
            reference.content,
            reference.headers.get("www-authenticate"),
        ), name


def test_rotation_keeps_the_old_secret_for_the_grace_period(broker: LiveBroker) -> None:
    data = broker.settings.data_dir
    old = str(cli(data, "credentials", "add", "--kind", "dev", "--name", "dana")["secret"])
    rotated = cli(data, "credentials", "rotate", "dana", "--grace", "3600")
    new = str(rotated["secret"])
    assert new != old
    assert mint(broker, old).status_code == 200
    assert mint(broker, new).status_code == 200
    cli(data, "credentials", "rotate", "dana", "--grace", "0")
    assert mint(broker, new).status_code == 401  # the previous secret with no grace left


def test_list_shows_last_use_and_expiry(broker: LiveBroker) -> None:
    data = broker.settings.data_dir
    secret = str(
        cli(
            data, "credentials", "add", "--kind", "dev", "--name", "erin", "--expires-in-days", "30"
        )["secret"]
    )
    assert mint(broker, secret).status_code == 200
    [row] = cli(data, "credentials", "list")["credentials"]  # type: ignore[misc]
    assert row["last_used_at"] is not None
    assert row["expires_at"] > row["created_at"]
    table = CliRunner().invoke(main, ["credentials", "list"], env={"BROKER_DATA_DIR": str(data)})
    assert "LAST USED" in table.output
    assert "erin" in table.output


def test_duplicate_live_name_is_refused(broker: LiveBroker) -> None:
    data = broker.settings.data_dir
    cli(data, "credentials", "add", "--kind", "ci", "--name", "api")
    result = CliRunner().invoke(
        main,
        ["credentials", "add", "--kind", "ci", "--name", "api", "--json"],
        env={"BROKER_DATA_DIR": str(data)},
    )
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "credential_exists"


def test_credential_bearers_are_404_unless_enabled(live_broker: StartBroker) -> None:
    inert = live_broker(issuer="https://oidc.example.com")
    assert mint(inert, "otb_ci_000000000000_x").status_code == 404


def test_an_unreadable_credential_store_is_503_not_500(broker: LiveBroker) -> None:
    secret = str(
        cli(broker.settings.data_dir, "credentials", "add", "--kind", "dev", "--name", "a")[
            "secret"
        ]
    )
    assert mint(broker, secret).status_code == 200
    # A real fault, not a mock: the table the broker reads is gone.
    with closing(sqlite3.connect(broker.settings.data_dir / "broker.sqlite3")) as conn:
        conn.execute("DROP TABLE credentials")
    resp = mint(broker, secret)
    assert (resp.status_code, resp.json()["error"]) == (503, "store_unavailable")


@pytest.mark.parametrize(
    "args",
    [
        ["add", "--kind", "dev", "--name", "a", "--expires-in-days", "0"],
        ["add", "--kind", "dev", "--name", "a", "--expires-in-days", "1000000000"],
        ["add", "--kind", "dev", "--name", "a", "--expires-in-days", "1e20"],
        ["rotate", "a", "--grace", "-1"],
        ["rotate", "a", "--grace", str(8 * 86400)],  # past the config's 7-day cap
    ],
)
def test_out_of_range_days_and_grace_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    env = {"BROKER_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["credentials", *args], env=env)
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output


def test_a_tag_value_sts_would_refuse_is_refused_when_added(tmp_path: Path) -> None:
    env = {"BROKER_DATA_DIR": str(tmp_path)}
    args = ["credentials", "add", "--kind", "ci", "--name", "web", "--tag", "team=hello!world"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 1
    assert "letters, digits, spaces and _.:/=+-@" in result.output
    ok = CliRunner().invoke(main, [*args[:-1], "team=Équipe 7"], env=env)
    assert ok.exit_code == 0, ok.output


def test_a_tag_key_a_resource_carries_the_scope_in_is_the_brokers_own(tmp_path: Path) -> None:
    table = '[{"name": "v", "role": "v-oidc-test", "bucket": "v-oidc-test", "scope_tag": "vault"}]'
    env = {
        "BROKER_DATA_DIR": str(tmp_path),
        "BROKER_AWS_ACCOUNT_ID": "123456789012",
        "BROKER_RESOURCES": table,
    }
    args = ["credentials", "add", "--kind", "ci", "--name", "web", "--tag", "VAULT=x"]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 1
    assert "the broker sets 'agentkeys_user_wallet', 'vault', 'caller' itself" in result.output


@pytest.mark.parametrize("since", ["nan", "inf", "1e999", "1_000", "-5", "yesterday"])
def test_audit_since_takes_unix_seconds_or_iso_only(tmp_path: Path, since: str) -> None:
    env = {"BROKER_DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["audit", "--since", since, "--json"], env=env)
    assert result.exit_code == 1
    assert json.loads(result.output)["error"] == "invalid_request"
    assert not (tmp_path / "broker.sqlite3").exists()  # refused before touching the store


@pytest.mark.parametrize(
    "command", [["credentials", "list"], ["credentials", "revoke", "a"], ["audit"]]
)
def test_reading_a_store_that_does_not_exist_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    # e.g. a mistyped --config: listing an empty store would look like "no credentials".
    data = tmp_path / "typo"
    result = CliRunner().invoke(main, [*command, "--json"], env={"BROKER_DATA_DIR": str(data)})
    assert result.exit_code == 2
    assert "no broker database" in json.loads(result.output)["message"]
    assert not data.exists()


def test_unknown_id_and_wrong_secret_do_the_same_work(tmp_path: Path) -> None:
    # Timing belongs to bench/auth_timing.py; here: both 401 paths make the very same calls
    # (Python and C functions, in order) and run the same SQL, so neither can be told apart.
    with closing(connect(tmp_path)) as conn:  # the connection itself, to trace its SQL
        store = SqliteStore(conn)
        _, secret = credentials.add(
            store,
            kind="ci",
            name="web",
            max_ttl=900,
            now=int(time.time()),
        )
        _, _, cred_id, random_part = secret.split("_", 3)
        bearers = {
            "unknown": f"otb_ci_{'0' * 12}_{random_part}",
            "wrong": f"otb_ci_{cred_id}_{'A' * len(random_part)}",
        }
        work: dict[str, tuple[list[str], list[str]]] = {}
        for name, bearer in bearers.items():
            calls: list[str] = []
            statements: list[str] = []

            def profile(
                frame: FrameType, event: str, arg: object, calls: list[str] = calls
            ) -> None:
                if event in ("call", "c_call"):
                    calls.append(getattr(arg, "__qualname__", "") or frame.f_code.co_qualname)

            conn.set_trace_callback(statements.append)
            sys.setprofile(profile)
            try:
                credentials.authenticate(store, bearer, int(time.time()))
            except credentials.Unauthorized:
                pass
            finally:
                sys.setprofile(None)
                conn.set_trace_callback(None)
            sql = [s.replace(cred_id, "ID").replace("0" * 12, "ID") for s in statements]
            work[name] = (calls, sql)
        assert work["unknown"] == work["wrong"]
        assert "SqliteStore.lookup_credential" in work["wrong"][0]


def test_a_credential_damaged_outside_the_cli_is_refused_and_recorded(broker: LiveBroker) -> None:
    data = broker.settings.data_dir
    added = cli(data, "credentials", "add", "--kind", "dev", "--name", "alice")
    with closing(sqlite3.connect(data / "broker.sqlite3")) as conn:
        conn.execute("UPDATE credentials SET extra_tags = 'not json' WHERE id = ?", (added["id"],))
        conn.commit()
    refused = mint(broker, str(added["secret"]))
    assert refused.status_code == 503
    assert refused.json()["error"] == "credential_damaged"
    assert f"credentials revoke {added['id']}" in refused.json()["message"]
    listed = cli(data, "credentials", "list")["credentials"]
    assert [c["id"] for c in listed] == [added["id"]]  # type: ignore[index]
    ok = mint(
        broker, str(cli(data, "credentials", "add", "--kind", "dev", "--name", "bob")["secret"])
    )
    assert ok.status_code == 200  # commits the refusal's record too
    with closing(sqlite3.connect(data / "broker.sqlite3")) as conn:
        rows = conn.execute("SELECT caller_id, result FROM audit ORDER BY seq").fetchall()
    assert rows[0] == (added["id"], "credential_damaged")


@pytest.mark.parametrize(
    ("tags", "rule"),
    [
        ([f"t{i}=v" for i in range(60)], "tags.count"),  # 60 + the scope and caller tags
        ([f"t{i}=v" for i in range(49)], "tags.count"),  # 51: one past STS's 50
        ([f"{'k' * 120}{i:03d}={'v' * 256}" for i in range(45)], "token.length"),
    ],
    ids=["60-tags", "51-tags-in-all", "tags-too-long-for-a-token"],
)
def test_a_credential_every_mint_would_refuse_is_refused_when_added(
    tmp_path: Path, tags: list[str], rule: str
) -> None:
    args = ["credentials", "add", "--kind", "dev", "--name", "alice", "--json"]
    args += [arg for tag in tags for arg in ("--tag", tag)]
    result = CliRunner().invoke(main, args, env={"BROKER_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1
    refusal = json.loads(result.output)
    assert refusal["error"] == "invalid_request"
    assert f"rule {rule}" in refusal["message"]
    assert not (tmp_path / "broker.sqlite3").exists()  # refused before touching the store


def test_a_credential_with_the_most_tags_sts_takes_is_added_and_mints(
    broker: LiveBroker,
) -> None:
    tags = [arg for i in range(48) for arg in ("--tag", f"t{i}=v")]  # 48 + scope + caller = 50
    added = cli(
        broker.settings.data_dir, "credentials", "add", "--kind", "dev", "--name", "a", *tags
    )
    minted = mint(broker, str(added["secret"]))
    assert minted.status_code == 200, minted.text
    assert len(minted.json()["principal_tags"]) == 50


def test_the_issue_time_token_length_matches_a_real_token(broker: LiveBroker) -> None:
    from broker.callers.claims import MintRequest, issue_findings

    long_tags = {f"{'k' * 100}{i:03d}": "v" * 200 for i in range(40)}
    tags = [arg for k, v in long_tags.items() for arg in ("--tag", f"{k}={v}")]
    added = cli(
        broker.settings.data_dir, "credentials", "add", "--kind", "dev", "--name", "b", *tags
    )
    token = mint(broker, str(added["secret"]), ttl_seconds=60).json()["jwt"]
    # the same token, checked at issue time, is exactly as long: a 20 000 limit just below it
    # refuses, one at it accepts
    req = MintRequest(kind="dev", caller_id="", scope="dev/b", max_ttl=60, extra_tags=long_tags)
    import broker.sts.token_rules as rules

    for limit, refused in ((len(token) - 1, True), (len(token), False)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(rules, "MAX_TOKEN_LENGTH", limit)
            found = [f.rule for f in issue_findings(broker.settings, req, int(time.time()))]
        assert ("token.length" in found) is refused


@pytest.mark.parametrize(
    ("column", "value", "status"),
    [
        ("max_ttl", "abc", 503),  # authenticates, then credential_damaged
        ("extra_tags", 7, 503),  # not even text
        ("scope_pattern", "not a pattern", 503),
        ("secret_hash", "text", 401),  # no hash: nothing can match it
        ("expires_at", "soon", 401),  # no time: fails closed, as expired
        ("revoked_at", "never", 401),
    ],
)
def test_any_damaged_column_of_a_credential_is_a_clear_answer_never_a_500(
    broker: LiveBroker, column: str, value: object, status: int
) -> None:
    data = broker.settings.data_dir
    added = cli(data, "credentials", "add", "--kind", "dev", "--name", "alice")
    with closing(sqlite3.connect(data / "broker.sqlite3")) as conn:
        conn.execute(f"UPDATE credentials SET {column} = ? WHERE id = ?", (value, added["id"]))  # noqa: S608 - a parametrised column name
        conn.commit()
    refused = mint(broker, str(added["secret"]))
    assert refused.status_code == status, refused.text
    assert refused.json()["error"] == {503: "credential_damaged", 401: "unauthorized"}[status]
