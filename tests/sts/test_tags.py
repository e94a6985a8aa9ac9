"""read_tags: the one reader of a token's session tags, in each form STS and SeaweedFS accept."""

from __future__ import annotations

from broker.sts.tags import (
    FLAT_TAG_PREFIX,
    FLAT_TRANSITIVE_CLAIM,
    SEAWEEDFS_TAGS_CLAIM,
    TAGS_CLAIM,
    read_tags,
)


def test_nested_tags_keep_only_one_string_values_and_nested_transitive_keys_win() -> None:
    claims = {
        TAGS_CLAIM: {
            "principal_tags": {"run": ["r1"], "bare": "r2", "two": ["a", "b"]},
            "transitive_tag_keys": ["run", 7],
        },
        FLAT_TRANSITIVE_CLAIM: ["other"],
    }
    tags = read_tags(claims)
    assert tags.tags == {"run": "r1"}
    assert tags.transitive_keys == ["run"]
    assert tags.transitive == [("flattened", ["other"]), ("nested", ["run", 7])]


def test_flattened_tags_are_read_and_win_over_nested_ones() -> None:
    claims = {
        TAGS_CLAIM: {"principal_tags": {"run": ["nested"]}},
        FLAT_TAG_PREFIX + "run": "flat",
        FLAT_TRANSITIVE_CLAIM: ["run"],
    }
    tags = read_tags(claims)
    assert tags.tags == {"run": "flat"}
    assert tags.transitive_keys == ["run"]
    assert tags.flat_names == [FLAT_TAG_PREFIX + "run", FLAT_TRANSITIVE_CLAIM]


def test_seaweedfs_claim_is_read_apart_from_aws_forms() -> None:
    tags = read_tags({SEAWEEDFS_TAGS_CLAIM: {"run": ["r1"]}})
    assert tags.seaweedfs == {"run": ["r1"]}
    assert tags.tags == {}
    assert not tags.nested_present
    assert tags.principal is None
