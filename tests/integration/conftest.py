"""One SeaweedFS + https broker for the whole session (about 1 s up, 2 s down)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from broker.main import main
from tests.seaweed_harness import BUCKET, SeaweedStack, seaweed_stack

VerifyRun = Callable[..., tuple[int, dict[str, Any]]]


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedStack]:
    # Session-scoped, so it starts before the per-test BROKER_* cleanup: clear them here too.
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("BROKER_")]:
            env.delenv(name)
        with seaweed_stack(credential_minting=True, rate_limits=False) as stack:
            yield stack


@pytest.fixture
def run_verify(seaweed: SeaweedStack) -> VerifyRun:
    """`test-broker verify --json` against the stack; extra CLI arguments appended."""

    def run(*args: str, role: str | None = None) -> tuple[int, dict[str, Any]]:
        argv = [
            "verify",
            "--json",
            "--broker-url",
            seaweed.broker.url,
            "--ca-bundle",
            str(seaweed.ca_file),
            "--sts-endpoint-url",
            seaweed.endpoint,
            "--s3-endpoint-url",
            seaweed.endpoint,
            "--role-arn",
            seaweed.role_arn(*([role] if role else [])),
            "--bucket",
            BUCKET,
            *args,
        ]
        result = CliRunner().invoke(main, argv)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result.exit_code, json.loads(result.stdout)

    return run


@pytest.fixture
def broker_cli(seaweed: SeaweedStack) -> Callable[..., str]:
    """Run a `test-broker` command against the stack broker's data directory."""

    def run(*args: str) -> str:
        env = {"BROKER_DATA_DIR": str(seaweed.settings.data_dir), "BROKER_CREDENTIAL_MINTING": "1"}
        result = CliRunner().invoke(main, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    return run


def write_token(tmp_path: Path, token: str) -> str:
    path = tmp_path / "token.jwt"
    path.write_text(token)
    return str(path)
