"""One config: TOML file, BROKER_* overrides, and refusals that name the field and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.config import load_settings
from broker.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_loopback_dev_setup() -> None:
    s = load_settings(environ={})
    assert s.oidc_issuer == "http://127.0.0.1:8080"
    assert s.data_dir == Path(".test-broker")
    assert s.federation_enabled
    assert s.listen_address == ("127.0.0.1", 8080)
    assert s.key_algorithm == "ES256"


def test_toml_file_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, 'oidc_issuer = "https://oidc.example.com"\ntoken_ttl_seconds = 120\n')
    s = load_settings(path, environ={})
    assert s.oidc_issuer == "https://oidc.example.com"
    assert s.token_ttl_seconds == 120
    assert not s.federation_enabled  # public issuer: inert by default
    assert s.listen_address == ("127.0.0.1", 8080)


def test_env_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'oidc_issuer = "https://oidc.example.com"\n')
    monkeypatch.setenv("BROKER_OIDC_ISSUER", "http://127.0.0.1:9123")
    s = load_settings(path)
    assert s.oidc_issuer == "http://127.0.0.1:9123"
    assert s.listen_address == ("127.0.0.1", 9123)


def test_broker_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_CONFIG", str(write(tmp_path, "token_ttl_seconds = 90\n")))
    assert load_settings().token_ttl_seconds == 90


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("http://oidc.example.com", "must use https"),
        ("https://oidc.example.com:8443", "must not carry a port"),
        ("https://oidc.example.com?x=1", "query or fragment"),
        ("https://oidc.example.com/", "must not end with '/'"),
        ("https://OIDC.example.com", "lower case"),
        ("oidc.example.com", "absolute URL"),
        ("https://exa mple.com", "not a DNS name"),
        ("https://oidc.example.com:", "not a DNS name"),  # policy render made 'host::aud'
        ("https://oidc.example.com./x", "not a DNS name"),
    ],
)
def test_bad_issuer_is_refused_with_the_fix(issuer: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="oidc_issuer") as err:
        load_settings(environ={}, oidc_issuer=issuer)
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a b", "path segment 'a b'"),
        ("/tenant/../admin", "'..' path segment"),
        ("/./tenant", "'.' path segment"),
        ("/tenant//a", "empty path segment"),
        ("/tenant\\a", "backslashes"),
        ("/ten%61nt", "'%' escapes"),
        ("/a%2Fb", "'%' escapes"),
        ("/t:aud", "punctuation"),
        ("/tenänt", "must be ASCII"),
        ("/" + "a" * 250, "at most 255"),
    ],
)
def test_issuer_paths_are_limited_to_what_iam_can_register(path: str, expected: str) -> None:
    for base in ("https://oidc.example.com", "http://127.0.0.1:8080"):
        with pytest.raises(ConfigError, match="oidc_issuer") as err:
            load_settings(environ={}, oidc_issuer=base + path)
        assert expected in str(err.value)


def test_doctor_reports_an_issuer_path_with_the_config_rule() -> None:
    from broker.sts.issuer_rules import check_issuer_url

    (finding,) = check_issuer_url("https://oidc.example.com/tenant/../admin")
    assert finding.rule == "discovery.issuer_url"
    assert "'..' path segment" in finding.detail
    assert check_issuer_url("https://oidc.example.com/tenant-a/b_c.d~e") == []


@pytest.mark.parametrize(
    "issuer",
    [
        "https://oidc.example.com",
        "https://oidc.example.com/tenant-a",
        "https://oidc.example.com/t/a_b.c~d",
        "http://[::1]:9000",
    ],
)
def test_good_issuers_are_accepted(issuer: str) -> None:
    assert load_settings(environ={}, oidc_issuer=issuer).oidc_issuer == issuer


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'oidc_isuer = "https://oidc.example.com"\n')
    with pytest.raises(ConfigError, match=r"oidc_isuer: unknown field"):
        load_settings(path, environ={})


def test_ttl_above_cap_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_token_ttl_seconds"):
        load_settings(environ={}, max_token_ttl_seconds=7200)
    with pytest.raises(ConfigError, match=r"token_ttl_seconds \(900\) is above"):
        load_settings(environ={}, token_ttl_seconds=900, max_token_ttl_seconds=600)


def test_open_federation_on_public_issuer_needs_opt_in() -> None:
    public = {"oidc_issuer": "https://oidc.example.com", "federation_proof": True}
    with pytest.raises(ConfigError, match="allow_open_federation_proof"):
        load_settings(environ={}, **public)
    s = load_settings(environ={}, allow_open_federation_proof=True, **public)
    assert s.open_federation_on_public_issuer


def test_a_loopback_issuer_listening_on_all_interfaces_is_not_open_by_default() -> None:
    # `serve --host 0.0.0.0` makes a loopback-issuer broker reachable by the network.
    everywhere = "0.0.0.0"  # noqa: S104 - the point of the test
    exposed = load_settings(environ={}, host=everywhere)
    assert exposed.issuer_is_loopback
    assert not exposed.federation_enabled
    assert exposed.minting_kinds == []
    with pytest.raises(ConfigError, match="non-loopback listen address"):
        load_settings(environ={}, host=everywhere, federation_proof=True)
    opted = load_settings(
        environ={}, host=everywhere, federation_proof=True, allow_open_federation_proof=True
    )
    assert opted.open_federation_on_public_issuer  # and serve warns
    assert load_settings(environ={}, host="127.0.0.1").federation_enabled


def test_trusted_proxies_are_addresses_never_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_TRUSTED_PROXIES", '["127.0.0.1", "10.0.0.0/8"]')
    ok = load_settings(environ={})
    assert ok.trusted_proxies == ["127.0.0.1", "10.0.0.0/8"]
    with pytest.raises(ConfigError, match=r"trusted_proxies.*'\*' is not an IP address"):
        load_settings(environ={}, trusted_proxies=["*"])


@pytest.mark.parametrize(
    "network",
    ["0.0.0.0/0", "::/0", "10.1.2.3/0", "0.0.0.0/0.0.0.0", "::1/0", "::ffff:0:0/96", "::/1"],
)
def test_trusted_proxies_refuse_networks_that_cover_everyone(network: str) -> None:
    with pytest.raises(ConfigError, match=r"trusted_proxies: .* covers every address"):
        load_settings(environ={}, trusted_proxies=["127.0.0.1", network])


def test_trusted_proxies_accept_real_proxy_networks() -> None:
    proxies = ["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "::ffff:10.0.0.0/104"]
    assert load_settings(environ={}, trusted_proxies=proxies).trusted_proxies == proxies


def test_a_malformed_env_value_names_the_variable_and_the_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BROKER_TRUSTED_PROXIES", "notjson")
    with pytest.raises(ConfigError) as err:
        load_settings(environ={})
    message = str(err.value)
    assert "BROKER_TRUSTED_PROXIES is not valid JSON" in message
    assert "JSON list of IP addresses or networks" in message
    assert "TOML" not in message
    cli = run_check(env={**os.environ, "BROKER_TRUSTED_PROXIES": "127.0.0.1"})
    assert cli.returncode == 2
    assert cli.stderr.startswith("error: invalid configuration: BROKER_TRUSTED_PROXIES is not")
    assert len(cli.stderr.splitlines()) == 1


RATES = ("mint_rate_per_second", "unauth_rate_per_second")
BURSTS = ("mint_burst", "unauth_burst")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *((f, v) for f in RATES for v in ("5e-324", "0", "-1", "nan", "inf", "1e309", "2e6")),
        *((f, v) for f in BURSTS for v in ("0", "1000001", "1e400")),
        ("key_reload_seconds", "5e-324"),
    ],
)
def test_rate_settings_are_bounded(monkeypatch: pytest.MonkeyPatch, field: str, value: str) -> None:
    var = f"BROKER_{field.upper()}"
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=rf"{field}: .*\(env {var}\)"):
        load_settings(environ={})


def test_rate_bounds_are_accepted_at_their_ends() -> None:
    slowest = load_settings(environ={}, mint_rate_per_second=0.001, unauth_rate_per_second=0.001)
    assert slowest.mint_rate_per_second == 0.001
    fastest = load_settings(
        environ={}, mint_rate_per_second=1e6, mint_burst=1_000_000, unauth_burst=1_000_000
    )
    assert fastest.mint_burst == 1_000_000


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_invalid_toml_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "oidc_issuer = \n"), environ={})


def run_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "broker", "serve", "--check", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_serve_check_validates_and_exits(tmp_path: Path) -> None:
    good = run_check("--config", str(write(tmp_path, 'oidc_issuer = "https://a.example.com"\n')))
    assert good.returncode == 0, good.stderr
    assert "configuration OK: issuer https://a.example.com" in good.stdout
    assert "minting: none (inert)" in good.stdout
    assert good.stdout.rstrip().endswith(", test buckets: none")  # what install.sh reads


def test_serve_check_refuses_bad_config(tmp_path: Path) -> None:
    bad = run_check("--config", str(write(tmp_path, 'oidc_issuer = "http://a.example.com"\n')))
    assert bad.returncode == 2
    assert "oidc_issuer" in bad.stderr
    assert "must use https" in bad.stderr


def test_the_deprecated_pair_still_reads_as_one_resource() -> None:
    with pytest.raises(
        ConfigError, match="test_role_name 'prod-admin' does not contain test_marker"
    ):
        load_settings(
            environ={},
            aws_account_id="123456789012",
            test_role_name="prod-admin",
            test_bucket="oidc-test-b",
        )
    s = load_settings(
        environ={},
        aws_account_id="123456789012",
        test_role_name="oidc-test-ci",
        test_bucket="oidc-test-b",
    )
    assert s.role_arns == ["arn:aws:iam::123456789012:role/oidc-test-ci"]
    assert (s.resource().name, s.resource().bucket) == ("default", "oidc-test-b")
    assert "deprecated" in s.deprecations[0]


def test_role_needs_an_account() -> None:
    with pytest.raises(ConfigError, match="aws_account_id"):
        load_settings(environ={}, test_role_name="oidc-test-ci", test_bucket="oidc-test-b")


@pytest.mark.parametrize("tag", ["exp", "sub", "ISS", "jti", "https://aws.amazon.com/tags"])
def test_a_scope_tag_named_like_a_claim_every_token_carries_is_refused(tag: str) -> None:
    # It is also a top-level claim: as "exp" it broke every mint with a 500.
    with pytest.raises(ConfigError, match="claim every token already carries"):
        load_settings(environ={}, scope_tag=tag)


@pytest.mark.parametrize("audience", ["", "a" * 256])
def test_an_audience_iam_cannot_register_is_refused(audience: str) -> None:
    with pytest.raises(ConfigError, match="audience"):
        load_settings(environ={}, audience=audience)
