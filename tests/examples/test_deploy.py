"""deploy/: the example config loads with the broker's own loader, and both CI files validate against
their schemas and run their shell steps against a local broker and SeaweedFS.

The CI files are run by tests/examples/ci_runner.py (how ``uses:`` steps and install lines are
mapped is in its docstring) with the CI variables their steps read set to test values: GitHub
GITHUB_REF/GITHUB_RUN_ID/GITHUB_RUN_ATTEMPT and ``vars.TEST_BROKER_URL``, GitLab
CI_PIPELINE_SOURCE/CI_PIPELINE_ID/CI_MERGE_REQUEST_IID and its project variables. The CI bearer
is issued by the test; the AWS SDKs reach SeaweedFS through AWS_ENDPOINT_URL_STS/_S3; the
reaper's AWS keys (configure-aws-credentials, GitLab's masked variables) are SeaweedFS's admin.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.aws import policy
from broker.config import load_settings
from tests.examples import ci_runner
from tests.examples.ci_runner import CiContext
from tests.examples.conftest import DEPLOY, DEPLOY_CONFIG, JobTokens
from tests.seaweed_harness import FOREIGN_PREFIX, SeaweedStack

GITHUB = DEPLOY / "github-actions.yml"
GITLAB = DEPLOY / "gitlab-ci.yml"
CLASSES = ("mail", "vault", "memory")


def test_example_config_loads_with_the_real_loader() -> None:
    settings = load_settings(DEPLOY_CONFIG, environ={})
    assert [r.name for r in settings.resources] == list(CLASSES)
    for resource in settings.resources:
        assert settings.test_marker in resource.role
        assert settings.test_marker in resource.bucket
        # Everything the bring-up derives renders for each data class.
        for kind in ("trust", "role", "bucket"):
            assert policy.render(settings, kind, resource)
    assert settings.run_prefix_days == 7
    assert settings.minting_kinds  # not inert: CI bearers can mint


def test_example_config_names_what_the_ci_files_use() -> None:
    settings = load_settings(DEPLOY_CONFIG, environ={})
    for ci_file in (GITHUB, GITLAB):
        text = ci_file.read_text()
        assert f"BROKER_CONFIG: deploy/{DEPLOY_CONFIG.name}" in text
        for resource in settings.resources:
            arn = settings.role_arn(resource).replace(resource.name, "$class")
            assert arn in text, (ci_file.name, arn)
            assert resource.bucket.replace(resource.name, "$class") in text


@pytest.mark.parametrize(
    ("path", "schema"), [(GITHUB, "vendor.github-workflows"), (GITLAB, "vendor.gitlab-ci")]
)
def test_ci_files_match_their_schemas(path: Path, schema: str) -> None:
    check = ci_runner.check_schema(path, schema)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The checkout: the files the jobs read (README.md, deploy/config.example.toml)."""
    work = tmp_path / "checkout"
    (work / "deploy").mkdir(parents=True)
    shutil.copy(DEPLOY.parent / "README.md", work / "README.md")
    shutil.copy(DEPLOY_CONFIG, work / "deploy" / DEPLOY_CONFIG.name)
    return work


def objects(stack: SeaweedStack, bucket: str, prefix: str) -> list[str]:
    listing = stack.admin_s3().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def buckets() -> list[str]:
    return [r.bucket for r in load_settings(DEPLOY_CONFIG, environ={}).resources]


def github(
    event: str, stack: SeaweedStack, tokens: JobTokens, **extra: object
) -> tuple[CiContext, str]:
    run_id = str(secrets.randbelow(10**9))
    ref = "refs/pull/7/merge" if event == "pull_request" else "refs/heads/main"
    admin = dict(zip(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), stack.admin_keys, strict=True))
    ctx = CiContext(
        event=event,
        vars={"TEST_BROKER_URL": stack.broker.url},
        variables={
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": event,
            "GITHUB_REF": ref,
            "GITHUB_RUN_ID": run_id,
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_REPOSITORY": "acme/app",
        },
        admin_keys=admin,
        # The job's OIDC token carries the same run as its variables.
        id_token_service=tokens.github_service(
            run_id=run_id, run_attempt="1", ref=ref, event_name=event
        ),
        **extra,  # type: ignore[arg-type]
    )
    return ctx, f"gh/acme/app/run-{run_id}-1"


def gitlab(
    event: str, stack: SeaweedStack, tokens: JobTokens, **extra: object
) -> tuple[CiContext, str]:
    pipeline, job = str(secrets.randbelow(10**9)), str(secrets.randbelow(10**9))
    variables = {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": event,
        "CI_PIPELINE_ID": pipeline,
        "CI_JOB_ID": job,
        "CI_PROJECT_PATH": "acme/app",
        "TEST_BROKER_URL": stack.broker.url,  # a CI/CD variable of the project
    }
    if event == "merge_request_event":
        variables["CI_MERGE_REQUEST_IID"] = "7"
    else:  # the reaper's keys, for the scheduled pipeline only
        variables |= dict(
            zip(("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), stack.admin_keys, strict=True)
        )
    issuer = tokens.gitlab
    ctx = CiContext(
        event=event,
        variables=variables,
        id_token=lambda aud: issuer.token(
            aud, pipeline_id=pipeline, job_id=job, pipeline_source=event
        ),
        **extra,  # type: ignore[arg-type]
    )
    return ctx, f"gl/acme/app/-/pipeline-{pipeline}-job-{job}"


def run_jobs(path: Path, ctx: CiContext, env: dict[str, str], cwd: Path) -> dict[str, object]:
    """Every job of the file that runs for ctx.event, by name (None: skipped by its rules)."""
    doc = ci_runner.load(path)
    runs: dict[str, object] = {}
    if path == GITHUB:
        for job in doc["jobs"]:
            steps = ci_runner.github_steps(doc, job, ctx)
            runs[job] = None if steps is None else ci_runner.run(steps, ctx, env, cwd)
    else:
        for job in [k for k, v in doc.items() if isinstance(v, dict) and "script" in v]:
            steps = ci_runner.gitlab_steps(doc, job, ctx)
            runs[job] = None if steps is None else ci_runner.run(steps, ctx, env, cwd)
    return runs


FILES = [
    pytest.param(GITHUB, github, "pull_request", "schedule", id="github"),
    pytest.param(GITLAB, gitlab, "merge_request_event", "schedule", id="gitlab"),
]
CLEANUP = {GITHUB: "Delete the run prefix", GITLAB: "after_script"}
WORK = {GITHUB: "Tests, in the run prefix of each bucket", GITLAB: "script"}


@pytest.mark.integration
@pytest.mark.parametrize(("path", "context", "event", "nightly"), FILES)
def test_pull_request_pipeline_verifies_works_and_reaps_its_run_prefix(
    path: Path,
    context: Callable[..., tuple[CiContext, str]],
    event: str,
    nightly: str,
    seaweed: SeaweedStack,
    token_service: JobTokens,
    machine_env: dict[str, str],
    workdir: Path,
) -> None:
    ctx, scope = context(event, seaweed, token_service, skip_step=CLEANUP[path])
    prefix = f"{scope}/"
    # Without its cleanup: verify's probes and the test's uploads, in each bucket's run prefix.
    runs = run_jobs(path, ctx, machine_env, workdir)
    job = runs["integration"]
    assert isinstance(job, ci_runner.JobRun)
    assert job.ok, job.report()
    assert runs["reap-nightly"] is None  # only on schedule
    for bucket in buckets():
        keys = objects(seaweed, bucket, prefix)
        assert f"{prefix}README.md" in keys, (bucket, keys)
        assert f"{prefix}test-broker-verify.txt" in keys, (bucket, keys)  # verify's own probe
    # The whole pipeline again (the same run): each bucket's run prefix is empty afterwards.
    ctx.skip_step = None
    job = run_jobs(path, ctx, machine_env, workdir)["integration"]
    assert isinstance(job, ci_runner.JobRun)
    assert job.ok, job.report()
    for bucket in buckets():
        assert objects(seaweed, bucket, prefix) == []
        assert objects(seaweed, bucket, FOREIGN_PREFIX) != []  # verify's seeded probe stays


@pytest.mark.integration
@pytest.mark.parametrize(("path", "context", "event", "nightly"), FILES)
def test_cleanup_runs_after_a_failed_test_step(
    path: Path,
    context: Callable[..., tuple[CiContext, str]],
    event: str,
    nightly: str,
    seaweed: SeaweedStack,
    token_service: JobTokens,
    machine_env: dict[str, str],
    workdir: Path,
) -> None:
    ctx, scope = context(event, seaweed, token_service, fail_step=WORK[path])
    job = run_jobs(path, ctx, machine_env, workdir)["integration"]
    assert isinstance(job, ci_runner.JobRun)
    assert not job.ok
    assert job.step(CLEANUP[path]).returncode == 0, job.report()
    for bucket in buckets():
        assert objects(seaweed, bucket, f"{scope}/") == []


@pytest.mark.integration
@pytest.mark.parametrize(("path", "context", "event", "nightly"), FILES)
def test_nightly_pipeline_reaps_only_on_schedule_and_keeps_young_run_prefixes(
    path: Path,
    context: Callable[..., tuple[CiContext, str]],
    event: str,
    nightly: str,
    seaweed: SeaweedStack,
    token_service: JobTokens,
    machine_env: dict[str, str],
    workdir: Path,
) -> None:
    young = f"ci/other/pr-1/run-{secrets.randbelow(10**9)}-1/young.txt"
    for bucket in buckets():
        seaweed.admin_s3().put_object(Bucket=bucket, Key=young, Body=b"today")
    ctx, _ = context(nightly, seaweed, token_service)
    runs = run_jobs(path, ctx, machine_env, workdir)
    assert runs["integration"] is None  # not on schedule
    job = runs["reap-nightly"]
    assert isinstance(job, ci_runner.JobRun)
    assert job.ok, job.report()
    # Ages are judged by LastModified (reap's own tests move the clock with --now): a run
    # prefix written today stays.
    for bucket in buckets():
        assert objects(seaweed, bucket, young) == [young]
