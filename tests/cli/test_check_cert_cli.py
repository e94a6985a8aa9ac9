"""test-broker check-cert: exit codes, --json, --textfile, the configured thumbprints, usage.

The issuer is ``localhost`` (a name the system resolves to loopback), served a trustme chain.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from broker.doctor.cert_check import OK_METRIC
from broker.main import main
from tests.doctor.cert_fixtures import samples, served, thumbprint
from tests.doctor.doctor_fixtures import crafted_issuer


@pytest.fixture
def intermediate(tls_ca: trustme.CA) -> trustme.CA:
    return tls_ca.create_child_ca()


@pytest.fixture
def localhost_issuer(intermediate: trustme.CA) -> Iterator[str]:
    with crafted_issuer(
        served(intermediate, host="localhost"), lambda url: {}, host="localhost"
    ) as url:
        yield url


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check-cert", *args])
    return result.exit_code, result.output


def test_the_command_exits_0_when_all_is_well_and_writes_the_textfile(
    localhost_issuer: str, ca_file: Path, tmp_path: Path
) -> None:
    prom = tmp_path / "cert.prom"
    code, out = run(
        "--issuer", localhost_issuer, "--ca-file", str(ca_file), "--textfile", str(prom)
    )
    assert code == 0, out
    assert out.splitlines()[-1].endswith(": OK")
    assert [({"issuer": localhost_issuer}, 1.0)] == samples(prom)[OK_METRIC]


def test_the_command_exits_1_on_a_warning_and_reports_json(
    localhost_issuer: str, ca_file: Path
) -> None:
    # 90 days left is under --warn-days 100
    code, out = run(
        "--issuer", localhost_issuer, "--ca-file", str(ca_file), "--warn-days", "100", "--json"
    )
    body = json.loads(out)
    assert (code, body["status"]) == (1, "warning")
    assert {k: v for k, v in body["checks"][1].items() if k != "detail"} == {
        "check": "expiry",
        "status": "warning",
    }
    assert body["serial"]
    assert body["expires_at"]


def test_the_configured_thumbprints_are_what_drift_is_measured_against(
    localhost_issuer: str, ca_file: Path, tmp_path: Path, intermediate: trustme.CA
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'oidc_thumbprints = ["{"a" * 40}"]\n')
    code, out = run(
        "--config", str(config), "--issuer", localhost_issuer, "--ca-file", str(ca_file), "--json"
    )
    body = json.loads(out)
    assert code == 1
    assert body["registered_thumbprints"] == ["a" * 40]
    assert {c["check"]: c["status"] for c in body["checks"]}["thumbprint"] == "drift"
    config.write_text(f'oidc_thumbprints = ["{thumbprint(intermediate)}"]\n')
    code, out = run(
        "--config", str(config), "--issuer", localhost_issuer, "--ca-file", str(ca_file)
    )
    assert code == 0, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --issuer URL or --config FILE"),
        (("--issuer", "http://127.0.0.1:8080"), "is not an https URL"),
        (("--issuer", "https://oidc.example.com", "--critical-days", "30"), "must not exceed"),
        (("--issuer", "https://oidc.example.com", "--warn-days", "-1"), "--warn-days"),
    ],
    ids=["no-issuer", "http", "critical-over-warn", "negative-days"],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    code, out = run(*args)
    assert code == 2
    assert message in out


def test_an_unreadable_ca_file_exits_2(tmp_path: Path) -> None:
    code, out = run("--issuer", "https://oidc.example.com", "--ca-file", str(tmp_path / "none.pem"))
    assert code == 2
    assert "--ca-file" in out


def test_an_unwritable_textfile_is_one_line_exit_2_naming_the_option(
    localhost_issuer: str, ca_file: Path, tmp_path: Path
) -> None:
    # Exit 1 would read as "the certificate needs attention"; the fault is the path given.
    prom = tmp_path / "missing" / "cert.prom"
    result = CliRunner().invoke(
        main,
        [
            "check-cert",
            "--issuer",
            localhost_issuer,
            "--ca-file",
            str(ca_file),
            "--textfile",
            str(prom),
        ],
    )
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: --textfile '{prom}' cannot be written: No such file")
