"""`verify` over several `[[resources]]` on SeaweedFS: each role reads the scope from its own tag.

The harness's second resource has a scope tag of its own (``second_scope``); its role and bucket
policies read only that tag, so its proof passes only because every token carries it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broker.main import main
from tests.seaweed_harness import ACCOUNT, RESOURCES, SECOND_BUCKET, SeaweedStack

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _seeder_credentials(seaweed: SeaweedStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify checks the foreign probe exists with the caller's own credentials: the seeder's."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.admin_keys[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.admin_keys[1])
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)


def _verify(seaweed: SeaweedStack, tmp_path: Path, *args: str) -> tuple[int, Any, str]:
    config = tmp_path / "config.toml"
    tables = "".join(
        "[[resources]]\n" + "".join(f'{k} = "{v}"\n' for k, v in table.items())
        for table in RESOURCES
    )
    config.write_text(f'aws_account_id = "{ACCOUNT}"\n{tables}')
    argv = ["verify", "--config", str(config), "--broker-url", seaweed.broker.url]
    argv += ["--ca-bundle", str(seaweed.ca_file)]
    argv += ["--sts-endpoint-url", seaweed.endpoint, "--s3-endpoint-url", seaweed.endpoint, *args]
    result = CliRunner().invoke(main, argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    body = json.loads(result.stdout) if "--json" in args else None
    return result.exit_code, body, result.stdout


def test_verify_without_a_flag_proves_every_resource(seaweed: SeaweedStack, tmp_path: Path) -> None:
    code, body, _ = _verify(seaweed, tmp_path, "--json")
    assert code == 0, body
    assert body["isolated"] is True
    assert [r["resource"] for r in body["resources"]] == ["main", "second"]
    assert all(r["isolated"] for r in body["resources"])


def test_verify_prints_one_table_naming_each_resource(
    seaweed: SeaweedStack, tmp_path: Path
) -> None:
    code, _, text = _verify(seaweed, tmp_path)
    assert code == 0, text
    head, *rows = [
        line for line in text.splitlines() if line.startswith(("RESOURCE", "main", "second"))
    ]
    assert head.split()[:2] == ["RESOURCE", "STEP"]
    assert {row.split()[0] for row in rows} == {"main", "second"}
    assert "resource second, scope 0x" in text


def test_one_resource_keeps_the_single_report_shape(seaweed: SeaweedStack, tmp_path: Path) -> None:
    code, body, _ = _verify(seaweed, tmp_path, "--resource", "second", "--json")
    assert code == 0, body
    assert (body["resource"], body["isolated"]) == ("second", True)
    assert "resources" not in body


def test_a_role_reaches_only_its_own_resources_bucket(
    seaweed: SeaweedStack, tmp_path: Path
) -> None:
    # The main role's policies name only the main bucket: its token's scope in the second
    # bucket is denied, so the proof fails there (the own half), not silently passes.
    args = ["--role-arn", seaweed.role_arn(), "--bucket", SECOND_BUCKET, "--json"]
    code, body, _ = _verify(seaweed, tmp_path, *args)
    assert (code, body["isolated"], body["resource"]) == (1, False, None)
    assert {s["name"]: s["outcome"] for s in body["steps"]}["put own"] == "denied"
