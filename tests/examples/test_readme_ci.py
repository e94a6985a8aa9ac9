"""README's "Use it from CI" jobs and "From a laptop" blocks, run as written (read from README.md).

The jobs run through tests/examples/ci_runner.py against the SeaweedFS stack's broker (https,
a throwaway CA) and SeaweedFS as STS + S3, with a CI bearer the test issues; the CI variables the
steps read (GITHUB_REF, GITHUB_RUN_ID, CI_PIPELINE_ID, …) are set to test values.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.examples import ci_runner
from tests.examples.ci_runner import CiContext
from tests.examples.conftest import JobTokens
from tests.seaweed_harness import BUCKET, FOREIGN_PREFIX, SeaweedStack

pytestmark = pytest.mark.integration

README = Path(__file__).parents[2] / "README.md"
EXAMPLE_URL = "https://test-broker.example.org"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def blocks(title: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(title), flags=re.DOTALL)


def ci_files() -> dict[str, str]:
    """The README's CI files by the path their first line names."""
    files = {}
    for block in blocks("Use it from CI", "yaml"):
        first = block.splitlines()[0]
        assert first.startswith("# "), "each CI example starts with a comment naming its file"
        files[first.removeprefix("# ")] = block
    return files


GITHUB = ".github/workflows/integration.yml"
GITLAB = ".gitlab-ci.yml"
GITHUB_OIDC = f"{GITHUB} (no stored secret)"
GITLAB_OIDC = f"{GITLAB} (no stored secret)"


def is_gitlab(name: str) -> bool:
    return name.startswith(GITLAB)


def test_readme_has_a_github_and_a_gitlab_job_with_and_without_a_secret() -> None:
    assert set(ci_files()) == {GITHUB, GITLAB, GITHUB_OIDC, GITLAB_OIDC}
    assert "secrets." not in ci_files()[GITHUB_OIDC]
    assert "id-token: write" in ci_files()[GITHUB_OIDC]
    assert "id_tokens:" in ci_files()[GITLAB_OIDC]


@pytest.mark.parametrize("name", [GITHUB, GITLAB, GITHUB_OIDC, GITLAB_OIDC])
def test_readme_ci_files_match_their_schemas(name: str, tmp_path: Path) -> None:
    schema = "vendor.gitlab-ci" if is_gitlab(name) else "vendor.github-workflows"
    path = tmp_path / "ci.yml"
    path.write_text(ci_files()[name])
    check = ci_runner.check_schema(path, schema)
    assert check.returncode == 0, check.stdout + check.stderr


def objects(stack: SeaweedStack, prefix: str) -> list[str]:
    listing = stack.admin_s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The checkout: a copy of README.md (the file the jobs upload), not the repository itself."""
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copy(README, work / "README.md")
    return work


@pytest.fixture
def neighbour(seaweed: SeaweedStack) -> str:
    """An object of another run of the same pipeline: cleanup must leave it alone."""
    key = f"ci/web/pr-12/run-{secrets.randbelow(10**9)}-1/keep.txt"
    seaweed.admin_s3().put_object(Bucket=BUCKET, Key=key, Body=b"another run")
    return key


def github_context(url: str, bearer: str, **extra: str) -> tuple[CiContext, str]:
    run_id = str(secrets.randbelow(10**9))
    ctx = CiContext(
        event="pull_request",
        secrets={"TEST_BROKER_BEARER": bearer},
        vars={"TEST_BROKER_URL": url},
        variables={
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": "pull_request",
            "GITHUB_REF": "refs/pull/12/merge",
            "GITHUB_RUN_ID": run_id,
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_REPOSITORY": "acme/app",
        },
        **extra,  # type: ignore[arg-type]
    )
    return ctx, f"pr-12/run-{run_id}-1"


def gitlab_context(url: str, bearer: str, **extra: str) -> tuple[CiContext, str]:
    pipeline = str(secrets.randbelow(10**9))
    ctx = CiContext(
        event="merge_request_event",
        variables={
            "CI": "true",
            "GITLAB_CI": "true",
            "CI_PIPELINE_SOURCE": "merge_request_event",
            "CI_PIPELINE_ID": pipeline,
            "CI_MERGE_REQUEST_IID": "12",
            "CI_PROJECT_PATH": "acme/app",
            # CI/CD variables of the project
            "TEST_BROKER_URL": url,
            "TEST_BROKER_BEARER": bearer,
        },
        **extra,  # type: ignore[arg-type]
    )
    return ctx, f"pr-12/run-{pipeline}"


def github_oidc_context(url: str, tokens: JobTokens, **extra: object) -> tuple[CiContext, str]:
    """A pull-request job with id-token: write: its token carries the run its variables name."""
    ctx, _ = github_context(url, "", **extra)
    run_id = ctx.variables["GITHUB_RUN_ID"]
    ctx.secrets = {}
    ctx.id_token_service = tokens.github_service(run_id=run_id, run_attempt="1")
    return ctx, f"gh/acme/app/run-{run_id}-1"


def gitlab_oidc_context(url: str, tokens: JobTokens, **extra: object) -> tuple[CiContext, str]:
    ctx, _ = gitlab_context(url, "", **extra)
    del ctx.variables["TEST_BROKER_BEARER"]
    pipeline, job = ctx.variables["CI_PIPELINE_ID"], str(secrets.randbelow(10**9))
    ctx.variables["CI_JOB_ID"] = job
    ctx.id_token = lambda aud: tokens.gitlab.token(aud, pipeline_id=pipeline, job_id=job)
    return ctx, f"gl/acme/app/-/pipeline-{pipeline}-job-{job}"


def run_readme_job(name: str, ctx: CiContext, env: dict[str, str], cwd: Path) -> ci_runner.JobRun:
    doc = ci_runner.load(ci_files()[name])
    if is_gitlab(name):
        steps = ci_runner.gitlab_steps(doc, "integration", ctx)
    else:
        steps = ci_runner.github_steps(doc, "integration", ctx)
    assert steps is not None
    return ci_runner.run(steps, ctx, env, cwd)


WORK_STEP = {GITHUB: "Tests, in the run prefix", GITLAB: "script"}
CLEANUP_STEP = {GITHUB: "Delete the run prefix", GITLAB: "after_script"}
JOBS = [GITHUB, GITLAB, GITHUB_OIDC, GITLAB_OIDC]


def step_names(name: str) -> tuple[str, str]:
    base = GITLAB if is_gitlab(name) else GITHUB
    return WORK_STEP[base], CLEANUP_STEP[base]


@pytest.fixture
def job_for(
    seaweed: SeaweedStack, add_credential: Callable[..., str], token_service: JobTokens
) -> Callable[..., tuple[CiContext, str]]:
    """The CI context for one of README's jobs, and the run scope it must work in: a fresh CI
    bearer (ci/<name>/pr-*/run-*) for the jobs with a secret, job tokens for the others."""

    def make(name: str, **extra: object) -> tuple[CiContext, str]:
        url = seaweed.broker.url
        if name == GITHUB_OIDC:
            return github_oidc_context(url, token_service, **extra)
        if name == GITLAB_OIDC:
            return gitlab_oidc_context(url, token_service, **extra)
        credential = f"web-{secrets.token_hex(3)}"
        bearer = add_credential("ci", credential, "--scope-pattern", f"ci/{credential}/pr-*/run-*")
        context = gitlab_context if is_gitlab(name) else github_context
        ctx, run = context(url, bearer, **extra)
        return ctx, f"ci/{credential}/{run}"

    return make


@pytest.mark.parametrize("name", JOBS)
def test_readme_job_works_in_its_run_prefix_and_cleans_it_up(
    name: str,
    job_for: Callable[..., tuple[CiContext, str]],
    seaweed: SeaweedStack,
    machine_env: dict[str, str],
    workdir: Path,
    neighbour: str,
) -> None:
    work, cleanup = step_names(name)
    ctx, scope = job_for(name, skip_step=cleanup)
    # Without its cleanup step, the job leaves exactly its upload, in its run prefix.
    job = run_readme_job(name, ctx, machine_env, workdir)
    assert job.ok, job.report()
    assert "README.md" in job.step(work).stdout, job.report()  # `aws s3 ls` saw it
    assert objects(seaweed, f"{scope}/") == [f"{scope}/README.md"]
    # The whole job (the same run again): its prefix is empty afterwards, nothing else touched.
    ctx.skip_step = None
    job = run_readme_job(name, ctx, machine_env, workdir)
    assert job.ok, job.report()
    assert job.step(cleanup).returncode == 0
    assert objects(seaweed, f"{scope}/") == []
    assert objects(seaweed, neighbour) == [neighbour]
    assert objects(seaweed, FOREIGN_PREFIX) != []


@pytest.mark.parametrize("name", JOBS)
def test_readme_job_cleans_up_after_a_failed_test_step(
    name: str,
    job_for: Callable[..., tuple[CiContext, str]],
    seaweed: SeaweedStack,
    machine_env: dict[str, str],
    workdir: Path,
) -> None:
    work, cleanup = step_names(name)
    ctx, scope = job_for(name, fail_step=work)
    job = run_readme_job(name, ctx, machine_env, workdir)
    assert not job.ok
    assert job.step(work).returncode == 1
    assert "README.md" in job.step(work).stdout, job.report()  # it had uploaded before failing
    assert job.step(cleanup).returncode == 0, job.report()
    assert objects(seaweed, f"{scope}/") == []


def test_laptop_blocks_run_in_one_shell(
    seaweed: SeaweedStack,
    add_credential: Callable[..., str],
    machine_env: dict[str, str],
    workdir: Path,
) -> None:
    secret = add_credential("dev", "ana")
    home = Path(machine_env["HOME"])
    (home / ".config" / "test-broker").mkdir()
    (home / ".config" / "test-broker" / "secret").write_text(secret + "\n")
    script = "\n".join(blocks("From a laptop", "bash")).replace(EXAMPLE_URL, seaweed.broker.url)
    run = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env=machine_env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    home_scope = lines[0]
    assert home_scope == "dev/ana"
    assert any(line.endswith(" notes.txt") for line in lines), lines  # aws s3 ls
    local = next(line for line in lines if line.startswith(f"{home_scope}/local-"))
    assert objects(seaweed, f"{home_scope}/notes.txt") == [f"{home_scope}/notes.txt"]
    assert objects(seaweed, f"{local}/") == []  # cleanup_test_scope deleted the local run
