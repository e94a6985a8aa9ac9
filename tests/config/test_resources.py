"""`[[resources]]`, `oidc_thumbprints` and the run-prefix keys: read, normalised, refused by name."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broker.config import load_settings
from broker.errors import ConfigError
from broker.main import main
from broker.testing.live import free_loopback_url, spawn_broker

ACCOUNT = {"aws_account_id": "123456789012"}
MAIL = {"name": "mail", "role": "mail-oidc-test", "bucket": "mail-oidc-test"}
VAULT = {"name": "vault", "role": "vault-oidc-test", "bucket": "vault-oidc-test"}


def load(**values: Any) -> Any:
    return load_settings(environ={}, **values)


def test_resources_are_read_from_toml_tables(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'aws_account_id = "123456789012"\n'
        'oidc_thumbprints = ["9E99A48A9960B14926BB7F3B02E22DA2B0AB7280"]\n'
        "run_prefix_days = 3\n"
        '[[resources]]\nname = "mail"\nrole = "mail-oidc-test"\nbucket = "mail-oidc-test"\n'
        '[[resources]]\nname = "vault"\nrole = "vault-oidc-test"\nbucket = "vault-oidc-test"\n'
        'scope_tag = "vault_scope"\n'
    )
    s = load_settings(config, environ={})
    assert [r.name for r in s.resources] == ["mail", "vault"]
    assert s.role_arns == [
        "arn:aws:iam::123456789012:role/mail-oidc-test",
        "arn:aws:iam::123456789012:role/vault-oidc-test",
    ]
    assert s.scope_tags == ["agentkeys_user_wallet", "vault_scope"]
    assert s.scope_tag_of(s.resource("mail")) == "agentkeys_user_wallet"
    assert s.scope_tag_of(s.resource("vault")) == "vault_scope"
    assert s.oidc_thumbprints == ["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"]
    assert (s.run_prefix_days, s.deprecations) == (3, [])


def test_resources_come_from_one_json_variable_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_AWS_ACCOUNT_ID", "123456789012")
    monkeypatch.setenv("BROKER_RESOURCES", json.dumps([MAIL]))
    assert load_settings(environ={}).resource().bucket == "mail-oidc-test"
    monkeypatch.setenv("BROKER_RESOURCES", "mail")
    with pytest.raises(ConfigError, match=r"BROKER_RESOURCES is not valid JSON.*list of tables"):
        load_settings(environ={})


def test_defaults_reap_only_ci_and_exchanged_namespaces() -> None:
    s = load()
    assert (s.resources, s.oidc_thumbprints, s.run_prefix_days) == ([], [], 7)
    assert s.run_prefix_patterns == ["ci/*/**", "gh/*/**", "gl/*/**"]


@pytest.mark.parametrize(
    ("table", "field"),
    [
        (MAIL | {"role": "mail-prod"}, "resources[1].role (resource 'mail')"),
        (MAIL | {"bucket": "mail-prod"}, "resources[1].bucket (resource 'mail')"),
    ],
)
def test_every_role_and_bucket_must_carry_the_marker(table: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(resources=[VAULT, table], **ACCOUNT)
    assert f"{field} '{'mail-prod'}' does not contain test_marker 'oidc-test'" in str(caught.value)


@pytest.mark.parametrize(
    ("second", "clash"),
    [
        (VAULT | {"name": "mail"}, "resources[1].name 'mail'"),
        (VAULT | {"role": "MAIL-oidc-test"}, "resources[1].role 'MAIL-oidc-test'"),
        (VAULT | {"bucket": "mail-oidc-test"}, "resources[1].bucket 'mail-oidc-test'"),
    ],
)
def test_names_roles_and_buckets_are_unique(second: dict[str, str], clash: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{clash} is already used by resources[0]")):
        load(resources=[MAIL, second], **ACCOUNT)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (MAIL | {"scope_tag": "caller"}, "is the caller_tag"),
        (MAIL | {"scope_tag": "AgentKeys_User_Wallet"}, "differs only in case"),
        (MAIL | {"scope_tag": "aws:x"}, "not a usable STS tag key"),
        (MAIL | {"extra": "x"}, "resources.0.extra: unknown field"),
        (MAIL | {"name": "Mail"}, "resources.0.name: String should match"),
    ],
)
def test_bad_tables_are_refused_naming_the_key(table: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(resources=[table], **ACCOUNT)


def test_resources_need_the_account_for_their_arns() -> None:
    with pytest.raises(ConfigError, match=r"resources\[0\].role .* needs aws_account_id"):
        load(resources=[MAIL])


def test_the_old_keys_and_tables_together_are_refused() -> None:
    legacy = {"test_role_name": "oidc-test-r", "test_bucket": "oidc-test-b"}
    with pytest.raises(ConfigError, match="are both set; move the role and bucket"):
        load(resources=[MAIL], **legacy, **ACCOUNT)
    with pytest.raises(ConfigError, match="test_role_name is set without test_bucket"):
        load(test_role_name="oidc-test-r", **ACCOUNT)


@pytest.mark.parametrize("value", ["ab" * 19, "zz" * 20, "9E:99:A4" + "0" * 32, "ab" * 21])
def test_thumbprints_are_40_hex(value: str) -> None:
    with pytest.raises(ConfigError, match=r"oidc_thumbprints: .* is not a SHA-1 thumbprint"):
        load(oidc_thumbprints=[value])


def test_thumbprints_are_lowercased_and_deduplicated_and_at_most_five() -> None:
    assert load(oidc_thumbprints=["AB" * 20, "ab" * 20]).oidc_thumbprints == ["ab" * 20]
    with pytest.raises(ConfigError, match="oidc_thumbprints"):
        load(oidc_thumbprints=[f"{i:040x}" for i in range(6)])


@pytest.mark.parametrize("pattern", ["*/run-*", "**", "/ci/**", "", "../x"])
def test_a_run_prefix_pattern_must_start_with_a_literal_segment(pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"run_prefix_patterns: .* must start with a literal"):
        load(run_prefix_patterns=[pattern])


@pytest.mark.parametrize("days", [0, -1, 3651])
def test_run_prefix_days_is_bounded(days: int) -> None:
    with pytest.raises(ConfigError, match="run_prefix_days"):
        load(run_prefix_days=days)


LEGACY_ENV = {
    "BROKER_AWS_ACCOUNT_ID": "123456789012",
    "BROKER_TEST_ROLE_NAME": "oidc-test-role",
    "BROKER_TEST_BUCKET": "oidc-test-bucket",
}


def test_serve_check_prints_the_deprecation_on_stderr() -> None:
    result = CliRunner().invoke(main, ["serve", "--check"], env=LEGACY_ENV)
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: test_role_name and test_bucket are deprecated")
    assert "configuration OK" in result.stdout
    assert result.stdout.rstrip().endswith(", test buckets: oidc-test-bucket")


def test_serve_logs_the_deprecation_as_a_warning(tmp_path: Path) -> None:
    url = free_loopback_url()
    env = {**os.environ, **LEGACY_ENV, "BROKER_OIDC_ISSUER": url, "BROKER_DATA_DIR": str(tmp_path)}
    proc = spawn_broker(env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    warnings = [
        line for line in lines if line["level"] == "warning" and "deprecated" in line["msg"]
    ]
    assert [w["logger"] for w in warnings] == ["broker.config"]


def test_more_scope_tags_than_sts_takes_are_refused_at_load() -> None:
    # 49 resource tags + the broker's scope tag + the caller tag: 51 tags on every token.
    many = [
        {
            "name": f"r{i}",
            "role": f"r{i}-oidc-test",
            "bucket": f"r{i}-oidc-test",
            "scope_tag": f"t{i}",
        }
        for i in range(49)
    ]
    with pytest.raises(ConfigError, match="exceed STS's 50 session tags"):
        load(**ACCOUNT, resources=many)
    load(**ACCOUNT, resources=many[:48])  # 50 tags in all: allowed
