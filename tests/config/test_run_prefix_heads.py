"""run_prefix_heads: the literal prefixes reap lists and the bucket lifecycle rules filter on."""

from __future__ import annotations

import pytest

from broker.config.resources import run_prefix_heads


@pytest.mark.parametrize(
    ("patterns", "prefixes"),
    [
        (["ci/*/**", "gh/**", "gl/**"], ["ci/", "gh/", "gl/"]),
        (["ci/*/pr-*/run-*"], ["ci/"]),
        (["ci/main/**", "ci/*/**"], ["ci/"]),  # ci/main/ lies inside ci/
        (["ci/nightly"], ["ci/nightly/"]),
    ],
)
def test_a_lifecycle_rule_filters_on_each_pattern_s_literal_head(
    patterns: list[str], prefixes: list[str]
) -> None:
    assert run_prefix_heads(patterns) == prefixes
