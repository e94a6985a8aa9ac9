"""Run scopes: the per-run S3 prefix a test run works in, and names derived from it.

In CI the run is named by the CI system (GitHub: PR number from ``GITHUB_REF``
``refs/pull/N/merge``, ``GITHUB_RUN_ID`` and ``GITHUB_RUN_ATTEMPT``; GitLab:
``CI_MERGE_REQUEST_IID`` and ``CI_PIPELINE_ID``), so every job of one run, and its cleanup step,
agree on it without talking to each other. Elsewhere a run is ``local-<UTC stamp>-<random>``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

_PULL_REF = re.compile(r"refs/pull/(\d+)/merge")
_ID = re.compile(r"[0-9]+")
# STS's RoleSessionName: 2-64 of [\w+=,.@-].
MAX_SESSION_NAME = 64
_NOT_SESSION_CHAR = re.compile(r"[^A-Za-z0-9_+=,.@-]+")


def ci_run_candidates(environ: Mapping[str, str] | None = None) -> list[str] | None:
    """The relative run scopes this CI run may use, most specific shape first; None outside CI.

    The credential's allowance decides which shape fits (``pr-12/run-34-1`` under
    ``ci/<name>/pr-*/run-*``, ``pr-12-run-34-1`` under ``ci/<name>/*``, ``run-34-1`` under
    ``ci/<name>/run-*``); the caller tries them in this order.
    """
    env = os.environ if environ is None else environ
    pr: str | None = None
    run: str | None = None
    if _ID.fullmatch(env.get("GITHUB_RUN_ID", "")):
        pull = _PULL_REF.fullmatch(env.get("GITHUB_REF", ""))
        pr = pull.group(1) if pull else None
        attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
        run = f"{env['GITHUB_RUN_ID']}-{attempt if _ID.fullmatch(attempt) else '1'}"
    elif _ID.fullmatch(env.get("CI_PIPELINE_ID", "")):
        iid = env.get("CI_MERGE_REQUEST_IID", "")
        pr = iid if _ID.fullmatch(iid) else None
        run = env["CI_PIPELINE_ID"]
    if run is None:
        return None
    if pr is None:
        return [f"run-{run}"]
    return [f"pr-{pr}/run-{run}", f"pr-{pr}-run-{run}", f"run-{run}"]


def local_run(now: datetime | None = None) -> str:
    """``local-<UTC stamp>-<random>``: sortable by start time, unique between parallel runs."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"local-{stamp}-{secrets.token_hex(3)}"


def session_name(scope: str) -> str:
    """An AWS role session name for ``scope``: readable, valid, at most 64 characters.

    ``/`` and ``:`` (not allowed there) become ``-``; a longer name keeps its start and ends in
    a hash of the whole scope, so two long scopes never share a name.
    """
    name = _NOT_SESSION_CHAR.sub("-", scope).strip("-") or "test-broker"
    if len(name) < 2:
        name = f"run-{name}"
    if len(name) <= MAX_SESSION_NAME:
        return name
    digest = hashlib.sha256(scope.encode()).hexdigest()[:12]
    return f"{name[: MAX_SESSION_NAME - 13]}-{digest}"
