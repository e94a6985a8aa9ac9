"""One SeaweedFS + https broker for the examples (about 1 s up, 2 s down), and a CI machine's env."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from broker.config import load_settings
from broker.main import main
from broker.testing.ci_issuer import StandInIssuer, github_token_service, stand_in_issuer
from tests.seaweed_harness import REGION, RESOURCES, SeaweedStack, seaweed_stack

DEPLOY = Path(__file__).parents[2] / "deploy"
DEPLOY_CONFIG = DEPLOY / "config.example.toml"


@pytest.fixture(scope="session")
def github_issuer(tls_ca: trustme.CA) -> Iterator[StandInIssuer]:
    with stand_in_issuer(tls_ca, preset="github-actions") as issuer:
        yield issuer


@pytest.fixture(scope="session")
def gitlab_issuer(tls_ca: trustme.CA) -> Iterator[StandInIssuer]:
    with stand_in_issuer(tls_ca, preset="gitlab") as issuer:
        yield issuer


@pytest.fixture(scope="session")
def seaweed(github_issuer: StandInIssuer, gitlab_issuer: StandInIssuer) -> Iterator[SeaweedStack]:
    """The harness's own role and bucket (README's examples) plus deploy/'s three data classes,
    each a SeaweedFS role and bucket with the policies rendered from the example config; the
    example config's [[trusted_issuers]] tables, each pointed at its stand-in issuer."""
    deploy = load_settings(DEPLOY_CONFIG, environ={})
    resources = [RESOURCES[0], *(r.model_dump(exclude_none=True) for r in deploy.resources)]
    stand_ins = {"github-actions": github_issuer, "gitlab": gitlab_issuer}
    trusted = [
        stand_ins[t.preset].table(
            t.audience,
            conditions=t.conditions,
            max_ttl_seconds=t.max_ttl_seconds,
            **({"scope_template": t.scope_template} if t.scope_template else {}),
        )
        for t in deploy.trusted_issuers
    ]
    # Session-scoped, so it starts before the per-test BROKER_* cleanup: clear them here too.
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("BROKER_")]:
            env.delenv(name)
        with seaweed_stack(
            credential_minting=True,
            rate_limits=False,
            resources=resources,
            test_marker=deploy.test_marker,
            trusted_issuers=trusted,
        ) as stack:
            yield stack


@pytest.fixture
def add_credential(seaweed: SeaweedStack) -> Callable[..., str]:
    """`test-broker credentials add … --json` beside the running broker; returns the secret."""

    def add(kind: str, name: str, *args: str) -> str:
        env = {"BROKER_DATA_DIR": str(seaweed.settings.data_dir), "BROKER_CREDENTIAL_MINTING": "1"}
        argv = ["credentials", "add", "--kind", kind, "--name", name, *args, "--json"]
        result = CliRunner().invoke(main, argv, env=env)
        assert result.exit_code == 0, result.output
        return str(json.loads(result.stdout)["secret"])

    return add


@pytest.fixture
def machine_env(seaweed: SeaweedStack, tmp_path: Path) -> dict[str, str]:
    """A CI runner's environment: our tools on PATH, a private HOME and TMPDIR, the test CA
    trusted, the AWS SDKs pointed at SeaweedFS, and nothing of this shell's AWS or CI setup."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "TMPDIR": str(tmp_path / "tmp"),
        "SSL_CERT_FILE": str(seaweed.ca_file),  # the broker's https (httpx and Python's ssl)
        "CURL_CA_BUNDLE": str(seaweed.ca_file),
        "AWS_ENDPOINT_URL_STS": seaweed.endpoint,
        "AWS_ENDPOINT_URL_S3": seaweed.endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
    }
    return env


@dataclass
class JobTokens:
    """Where a job's own OIDC token comes from: GitHub's token service, GitLab's issuer."""

    github_service: Callable[..., dict[str, str]]  # claims -> the job's ACTIONS_ID_TOKEN_* env
    gitlab: StandInIssuer


@pytest.fixture
def token_service(
    github_issuer: StandInIssuer, gitlab_issuer: StandInIssuer
) -> Iterator[JobTokens]:
    with contextlib.ExitStack() as stack:

        def start(**claims: str) -> dict[str, str]:
            return stack.enter_context(github_token_service(github_issuer, **claims)).env

        yield JobTokens(start, gitlab_issuer)
