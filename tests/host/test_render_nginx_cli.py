"""`test-broker render nginx`: what the command writes, and what it refuses (one line, exit 2)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from broker.cli.main import main
from broker.config import load_settings
from broker.host.nginx import NginxSite, certbot_live_files, render_nginx_site

PUBLIC = {"BROKER_OIDC_ISSUER": "https://issuer.example.com/tenant"}


def test_the_site_defaults_to_certbots_files_and_the_issuers_path(tmp_path: Path) -> None:
    out = tmp_path / "test-broker"
    result = CliRunner().invoke(main, ["render", "nginx", "--out", str(out)], env=PUBLIC)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    cert, key = certbot_live_files("issuer.example.com")
    assert f"ssl_certificate {cert};" in text
    assert f"ssl_certificate_key {key};" in text
    assert "location = /tenant/.well-known/openid-configuration {" in text
    assert "location = /tenant/.well-known/jwks.json {" in text
    assert "listen *:443 ssl;" in text
    assert "listen [::]:80;" in text
    assert "return 301 https://issuer.example.com$request_uri;" in text
    assert "{{" not in text


def test_config_paths_replace_certbots(tmp_path: Path) -> None:
    env = {**PUBLIC, "BROKER_TLS_CERT_FILE": "/etc/ssl/chain.pem", "BROKER_TLS_KEY_FILE": "/k.pem"}
    result = CliRunner().invoke(main, ["render", "nginx"], env=env)
    assert result.exit_code == 0, result.output
    assert "ssl_certificate /etc/ssl/chain.pem;" in result.output
    assert "ssl_certificate_key /k.pem;" in result.output


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({"BROKER_OIDC_ISSUER": "http://127.0.0.1:9000"}, [], "is not a public https issuer"),
        ({**PUBLIC, "BROKER_TLS_CERT_FILE": "/etc/a b.pem"}, [], "tls_cert_file"),
        ({**PUBLIC, "BROKER_TLS_KEY_FILE": "relative.pem"}, [], "tls_key_file"),
        (PUBLIC, ["--listen", "1.2.3.4;evil"], "is not an IP address"),
        (PUBLIC, ["--acme-webroot", "/var/www/$x"], "ACME webroot"),
        (PUBLIC, ["--http-port", "8443", "--https-port", "8443"], "must differ"),
    ],
)
def test_unusable_input_is_one_line_and_exit_2(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["render", "nginx", *args], env=env)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def _nginx_t(directory: Path, site: str) -> subprocess.CompletedProcess[str]:
    (directory / "site.conf").write_text(site)
    conf = directory / "nginx.conf"
    conf.write_text(
        f"pid {directory}/nginx.pid;\nevents {{}}\nhttp {{ include {directory}/site.conf; }}\n"
    )
    return subprocess.run(
        ["/usr/sbin/nginx", "-t", "-p", str(directory), "-c", str(conf), "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.integration
def test_nginx_accepts_the_default_site(tmp_path: Path) -> None:
    # The host's own rendering (wildcard listens, ports 80 and 443) must pass `nginx -t`; the
    # certificate files only have to exist, so point the config at a throwaway pair.
    leaf = trustme.CA().issue_cert("issuer.example.com")
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    settings = load_settings(
        environ={}, oidc_issuer=PUBLIC["BROKER_OIDC_ISSUER"], tls_cert_file=cert, tls_key_file=key
    )
    test = _nginx_t(tmp_path, render_nginx_site(settings))
    assert test.returncode == 0, test.stderr


@pytest.mark.integration
def test_the_acme_only_site_loads_before_any_certificate_exists(tmp_path: Path) -> None:
    settings = load_settings(environ={}, oidc_issuer=PUBLIC["BROKER_OIDC_ISSUER"])
    full = _nginx_t(tmp_path, render_nginx_site(settings))
    assert full.returncode != 0  # certbot's files are not there yet
    assert "fullchain.pem" in full.stderr
    site = render_nginx_site(settings, NginxSite(acme_only=True))
    assert "ssl_" not in site
    assert "location ^~ /.well-known/acme-challenge/ {" in site
    acme_only = _nginx_t(tmp_path, site)
    assert acme_only.returncode == 0, acme_only.stderr


def test_out_never_follows_a_symlink_planted_beside_it(tmp_path: Path) -> None:
    # The old fixed temporary name (.NAME.partial) was written through: another user's link there
    # overwrote its target and made it 0644.
    victim = tmp_path / "victim"
    victim.write_text("keep")
    victim.chmod(0o600)
    out = tmp_path / "test-broker"
    (tmp_path / f".{out.name}.partial").symlink_to(victim)
    result = CliRunner().invoke(main, ["render", "nginx", "--out", str(out)], env=PUBLIC)
    assert result.exit_code == 0, result.output
    assert (victim.read_text(), stat.S_IMODE(victim.stat().st_mode)) == ("keep", 0o600)
    assert "ssl_certificate " in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert not out.is_symlink()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == [f".{out.name}.partial", out.name, "victim"]  # no temporary left
