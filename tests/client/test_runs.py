"""Run scopes from CI variables, and AWS session names derived from scopes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.callers.scopes import SCOPE_PATTERN
from broker.client.runs import ci_run_candidates, local_run, session_name

SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"GITHUB_RUN_ID": "34", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_REF": "refs/pull/12/merge"},
            ["pr-12/run-34-2", "pr-12-run-34-2", "run-34-2"],
        ),
        ({"GITHUB_RUN_ID": "34", "GITHUB_REF": "refs/heads/main"}, ["run-34-1"]),
        (
            {"GITHUB_RUN_ID": "34", "GITHUB_RUN_ATTEMPT": "x;rm", "GITHUB_REF": "refs/pull/1/head"},
            ["run-34-1"],
        ),
        (
            {"CI_PIPELINE_ID": "77", "CI_MERGE_REQUEST_IID": "5"},
            ["pr-5/run-77", "pr-5-run-77", "run-77"],
        ),
        ({"CI_PIPELINE_ID": "77"}, ["run-77"]),
        ({"GITHUB_RUN_ID": "../x"}, None),
        ({}, None),
    ],
    ids=[
        "github-pr",
        "github-push",
        "github-odd-values",
        "gitlab-mr",
        "gitlab-branch",
        "bad-id",
        "local",
    ],
)
def test_ci_variables_name_the_run(env: dict[str, str], expected: list[str] | None) -> None:
    assert ci_run_candidates(env) == expected


def test_a_local_run_sorts_by_start_and_differs_between_parallel_runs() -> None:
    at = datetime(2026, 11, 30, 13, 0, 5, tzinfo=UTC)
    first, second = local_run(at), local_run(at)
    assert re.fullmatch(r"local-20261130T130005Z-[0-9a-f]{6}", first)
    assert first != second


@given(st.from_regex(SCOPE_PATTERN, fullmatch=True).filter(lambda s: len(s) <= 256))
def test_every_scope_gets_a_valid_session_name(scope: str) -> None:
    assert SESSION_NAME.fullmatch(session_name(scope))


def test_long_scopes_keep_their_start_and_stay_apart() -> None:
    a, b = "ci/web/" + "x" * 80 + "/run-1", "ci/web/" + "x" * 80 + "/run-2"
    assert session_name("ci/web/pr-12/run-34-1") == "ci-web-pr-12-run-34-1"
    assert len(session_name(a)) == 64
    assert session_name(a).startswith("ci-web-xxx")
    assert session_name(a) != session_name(b)
