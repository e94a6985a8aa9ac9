"""`test-broker reap` on SeaweedFS: mixed ages and prefixes, look-alike keys, refusals, batches.

SeaweedFS stamps LastModified with the real time, so objects are aged by judging them from a
later ``--now``. Other tests leave objects in the shared buckets, so expectations are computed
from listings taken before and after each run.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner

from broker.aws import reap
from broker.config import load_settings
from broker.main import main
from broker.testing.live import wait_until
from tests.seaweed_harness import ACCOUNT, BUCKET, REGION, RESOURCES, SECOND_BUCKET, SeaweedStack

pytestmark = pytest.mark.integration
WEEK = 7 * 86400
Listing = dict[tuple[str, str], tuple[float, int]]
Reap = Callable[..., tuple[int, str, str]]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    tables = "".join(
        "[[resources]]\n" + "".join(f'{k} = "{v}"\n' for k, v in table.items())
        for table in RESOURCES
    )
    path = tmp_path / "config.toml"
    path.write_text(f'aws_account_id = "{ACCOUNT}"\n{tables}')
    return path


@pytest.fixture
def aws_env(seaweed: SeaweedStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """reap's own credentials: boto3's default chain (here the env) and AWS_ENDPOINT_URL_S3."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.admin_keys[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.admin_keys[1])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run_reap(config_file: Path, aws_env: None) -> Reap:
    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, ["reap", "--config", str(config_file), *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result.exit_code, result.stdout, result.stderr

    return run


def listing(seaweed: SeaweedStack) -> Listing:
    s3 = seaweed.admin_s3()
    out: Listing = {}
    for bucket in (BUCKET, SECOND_BUCKET):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                out[(bucket, obj["Key"])] = (obj["LastModified"].timestamp(), obj["Size"])
    return out


def put(seaweed: SeaweedStack, keys: list[tuple[str, str]]) -> None:
    s3 = seaweed.admin_s3()
    for bucket, key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


@pytest.fixture
def name() -> str:
    return f"reap-{secrets.token_hex(4)}"


def test_nightly_reap_deletes_only_old_keys_inside_the_patterns(
    seaweed: SeaweedStack, run_reap: Reap, name: str
) -> None:
    old_inside = [
        (BUCKET, f"ci/{name}/pr-1/run-1/a.txt"),
        (BUCKET, f"ci/{name}/pr-1/run-1/logs/b.txt"),
        (BUCKET, f"ci/{name}/pr-1/run-2/c"),
        (SECOND_BUCKET, f"gh/{name}/repo/pr-2/run-3-1/d.bin"),
    ]
    # SeaweedFS folds "a//b" into "a/b" and refuses "." and ".." segments, so those look-alikes
    # are covered by tests/aws/test_reap_guard.py only.
    lookalikes = [
        (BUCKET, f"cix/{name}/pr-1/run-1/a"),
        (BUCKET, f"CI/{name}/pr-1/run-1/a"),
        (BUCKET, f"dev/{name}/pr-1/run-1/a"),
        (BUCKET, f"0xdeadbeef/ci/{name}/run-1/a"),
        (SECOND_BUCKET, f"archive/ci/{name}/pr-1/run-1/a"),
        (SECOND_BUCKET, f"ci/{name}.txt"),  # directly under ci/: no run prefix
    ]
    put(seaweed, old_inside + lookalikes)
    old_newest = max(listing(seaweed)[k][0] for k in old_inside)
    wait_until(lambda: time.time() >= old_newest + 1.05)  # LastModified counts whole seconds
    fresh = [(BUCKET, f"ci/{name}/pr-1/run-3/new"), (SECOND_BUCKET, f"gl/{name}/run-1/new")]
    put(seaweed, fresh)
    before = listing(seaweed)
    assert min(before[k][0] for k in fresh) > old_newest
    judged_at = str(int(old_newest) + WEEK)  # the old group is exactly a week old then

    code, out, err = run_reap("--older-than", "7d", "--now", judged_at, "--dry-run", "--json")
    assert (code, err) == (0, "")
    assert listing(seaweed) == before  # a dry run deletes nothing
    dry = json.loads(out)

    code, out, err = run_reap("--older-than", "7d", "--now", judged_at, "--json")
    assert (code, err) == (0, "")
    after = listing(seaweed)
    gone = set(before) - set(after)
    assert set(old_inside) <= gone
    assert not gone & set(lookalikes + fresh)
    report = json.loads(out)
    assert report["ok"] is True
    assert [b["bucket"] for b in report["buckets"]] == [BUCKET, SECOND_BUCKET]
    for summary, dry_summary in zip(report["buckets"], dry["buckets"], strict=True):
        bucket = summary["bucket"]
        deleted = [k for k in gone if k[0] == bucket]
        assert summary["objects"] == len(deleted) == dry_summary["objects"]
        assert summary["bytes"] == sum(before[k][1] for k in deleted)
        assert summary["prefixes"] == len(summary["run_prefixes"])
    mine = {p for b in report["buckets"] for p in b["run_prefixes"] if name in p}
    assert mine == {
        f"ci/{name}/pr-1/run-1",
        f"ci/{name}/pr-1/run-1/logs",
        f"ci/{name}/pr-1/run-2",
        f"gh/{name}/repo/pr-2/run-3-1",
    }


def test_per_job_reap_deletes_one_scope_whatever_its_age(
    seaweed: SeaweedStack, run_reap: Reap, name: str
) -> None:
    job = [(BUCKET, f"ci/{name}/pr-5/run-7/a"), (SECOND_BUCKET, f"ci/{name}/pr-5/run-7/b/c")]
    siblings = [(BUCKET, f"ci/{name}/pr-5/run-70/x"), (BUCKET, f"ci/{name}/pr-5/run-7x")]
    put(seaweed, job + siblings)
    before = listing(seaweed)
    # LastModified is whole seconds: judge a minute later so "just written" counts as age >= 0.
    later = str(int(time.time()) + 60)
    code, out, err = run_reap("--scope", f"ci/{name}/pr-5/run-7", "--now", later)
    assert (code, err) == (0, ""), out
    assert set(before) - set(listing(seaweed)) == set(job)
    lines = out.splitlines()
    assert lines[0].split() == ["BUCKET", "PREFIXES", "OBJECTS", "BYTES"]
    assert lines[2].split() == [BUCKET, "1", "1", str(len(job[0][1]))]
    assert "deleted 2 objects" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resource", "prod"], "no resource is named 'prod'"),
        (["--scope", "dev/someone"], "is outside run_prefix_patterns"),
        (["--scope", "ci"], "is outside run_prefix_patterns"),
        (["--scope", ""], "empty or the bucket's root"),
        (["--scope", "/"], "empty or the bucket's root"),
    ],
)
def test_refusals_exit_1_before_any_delete(
    seaweed: SeaweedStack, run_reap: Reap, name: str, args: list[str], message: str
) -> None:
    put(seaweed, [(BUCKET, f"ci/{name}/run-1/a"), (BUCKET, f"dev/someone/{name}")])
    before = listing(seaweed)
    code, out, err = run_reap(*args, "--older-than", "0", "--now", str(int(time.time()) + WEEK))
    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    assert message in err
    assert err.count("\n") == 1  # one line, no traceback
    assert listing(seaweed) == before


def test_a_bucket_that_cannot_be_listed_deletes_nothing(
    seaweed: SeaweedStack, aws_env: None, tmp_path: Path, name: str
) -> None:
    put(seaweed, [(BUCKET, f"ci/{name}/run-1/a")])
    before = listing(seaweed)
    missing = {"name": "gone", "role": "gone-oidc-test", "bucket": "gone-oidc-test"}
    config = tmp_path / "gone.toml"
    config.write_text(
        f'aws_account_id = "{ACCOUNT}"\n'
        + "".join(
            "[[resources]]\n" + "".join(f'{k} = "{v}"\n' for k, v in t.items())
            for t in [*RESOURCES, missing]
        )
    )
    result = CliRunner().invoke(main, ["reap", "--config", str(config), "--older-than", "0"])
    assert result.exit_code == 1
    assert (
        "s3 list-objects-v2 gone-oidc-test/ci/ (nothing was deleted): NoSuchBucket" in result.stderr
    )
    assert listing(seaweed) == before  # the listable buckets were not touched either


def test_deletes_go_in_batches_of_1000(seaweed: SeaweedStack, aws_env: None, name: str) -> None:
    keys = [(BUCKET, f"ci/{name}/run-1/{i:04}") for i in range(1005)]
    put(seaweed, keys)
    settings = load_settings(environ={}, aws_account_id=ACCOUNT, resources=RESOURCES)
    s3 = reap.default_s3()
    sizes: list[int] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        sizes.append(len(params["Delete"]["Objects"]))
        assert params["Delete"]["Quiet"] is True

    s3.meta.events.register("provide-client-params.s3.DeleteObjects", count)
    guard = reap.RunPrefixGuard(settings.run_prefix_patterns, f"ci/{name}/run-1")
    doomed = reap.find_expired(s3, settings, [BUCKET], guard, time.time() + 60)
    ticks: list[int] = []
    assert reap.delete_expired(s3, settings, doomed, guard, ticks.append) == []
    assert (sizes, ticks) == ([1000, 5], [1000, 5])
    assert not set(keys) & set(listing(seaweed))
    cast(Any, s3).close()


def test_a_terminal_gets_a_progress_bar_on_stderr(
    seaweed: SeaweedStack, config_file: Path, aws_env: None, name: str
) -> None:
    put(seaweed, [(BUCKET, f"ci/{name}/run-1/{i}") for i in range(3)])
    argv = [sys.executable, "-m", "broker", "reap", "--config", str(config_file)]
    argv += ["--scope", f"ci/{name}/run-1", "--now", str(int(time.time()) + 60)]
    controller, terminal = pty.openpty()  # the bar is small: it fits the pty buffer unread
    try:
        proc = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
            timeout=60,
            check=False,
        )
        os.close(terminal)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the terminal side is closed and drained
            while chunk := os.read(controller, 4096):
                shown += chunk
    finally:
        os.close(controller)
    assert proc.returncode == 0, shown
    assert b"deleting" in shown
    assert "deleting" not in proc.stdout  # stdout keeps only the summary
    assert proc.stdout.splitlines()[2].split() == [
        BUCKET,
        "1",
        "3",
        str(3 * len(f"ci/{name}/run-1/0")),
    ]
