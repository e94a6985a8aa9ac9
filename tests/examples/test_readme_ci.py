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


def test_readme_has_a_github_and_a_gitlab_job() -> None:
    assert set(ci_files()) == {".github/workflows/integration.yml", ".gitlab-ci.yml"}


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        (".github/workflows/integration.yml", "vendor.github-workflows"),
        (".gitlab-ci.yml", "vendor.gitlab-ci"),
    ],
)
def test_readme_ci_files_match_their_schemas(name: str, schema: str, tmp_path: Path) -> None:
    path = tmp_path / Path(name).name
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


def run_readme_job(name: str, ctx: CiContext, env: dict[str, str], cwd: Path) -> ci_runner.JobRun:
    doc = ci_runner.load(ci_files()[name])
    if name.endswith(".gitlab-ci.yml"):
        steps = ci_runner.gitlab_steps(doc, "integration", ctx)
    else:
        steps = ci_runner.github_steps(doc, "integration", ctx)
    assert steps is not None
    return ci_runner.run(steps, ctx, env, cwd)


CONTEXTS = [
    pytest.param(".github/workflows/integration.yml", github_context, id="github"),
    pytest.param(".gitlab-ci.yml", gitlab_context, id="gitlab"),
]
WORK_STEP = {
    ".github/workflows/integration.yml": "Tests, in the run prefix",
    ".gitlab-ci.yml": "script",
}
CLEANUP_STEP = {
    ".github/workflows/integration.yml": "Delete the run prefix",
    ".gitlab-ci.yml": "after_script",
}


@pytest.fixture
def ci_bearer(add_credential: Callable[..., str]) -> tuple[str, str]:
    """A CI bearer for ci/<name>/pr-*/run-* (a fresh name: live names are unique per kind)."""
    name = f"web-{secrets.token_hex(3)}"
    return name, add_credential("ci", name, "--scope-pattern", f"ci/{name}/pr-*/run-*")


@pytest.mark.parametrize(("name", "context"), CONTEXTS)
def test_readme_job_works_in_its_run_prefix_and_cleans_it_up(
    name: str,
    context: Callable[..., tuple[CiContext, str]],
    seaweed: SeaweedStack,
    ci_bearer: tuple[str, str],
    machine_env: dict[str, str],
    workdir: Path,
    neighbour: str,
) -> None:
    credential, bearer = ci_bearer
    ctx, run = context(seaweed.broker.url, bearer, skip_step=CLEANUP_STEP[name])
    key = f"ci/{credential}/{run}/README.md"
    # Without its cleanup step, the job leaves exactly its upload, in its run prefix.
    job = run_readme_job(name, ctx, machine_env, workdir)
    assert job.ok, job.report()
    assert "README.md" in job.step(WORK_STEP[name]).stdout, job.report()  # `aws s3 ls` saw it
    assert objects(seaweed, f"ci/{credential}/") == [key]
    # The whole job (the same run again): its prefix is empty afterwards, nothing else touched.
    ctx.skip_step = None
    job = run_readme_job(name, ctx, machine_env, workdir)
    assert job.ok, job.report()
    assert job.step(CLEANUP_STEP[name]).returncode == 0
    assert objects(seaweed, f"ci/{credential}/") == []
    assert objects(seaweed, neighbour) == [neighbour]
    assert objects(seaweed, FOREIGN_PREFIX) != []


@pytest.mark.parametrize(("name", "context"), CONTEXTS)
def test_readme_job_cleans_up_after_a_failed_test_step(
    name: str,
    context: Callable[..., tuple[CiContext, str]],
    seaweed: SeaweedStack,
    ci_bearer: tuple[str, str],
    machine_env: dict[str, str],
    workdir: Path,
) -> None:
    credential, bearer = ci_bearer
    ctx, _ = context(seaweed.broker.url, bearer, fail_step=WORK_STEP[name])
    job = run_readme_job(name, ctx, machine_env, workdir)
    assert not job.ok
    work = job.step(WORK_STEP[name])
    assert work.returncode == 1
    assert "README.md" in work.stdout, job.report()  # it had uploaded before failing
    cleanup = job.step(CLEANUP_STEP[name])
    assert cleanup.returncode == 0, job.report()
    assert objects(seaweed, f"ci/{credential}/") == []


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
