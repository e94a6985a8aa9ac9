"""Session tags: the claim names, STS's limits and charset, and the one reader of a token's tags.

Every module that needs to know what tags a token carries calls :func:`read_tags`: the rules
(``tags.*`` in :mod:`broker.sts.token_rules`), the trust-policy evaluator, ``verify`` and its
diagnosis. The limits and charset are STS's (docs/sts-rules.md, "Session tags").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TAGS_CLAIM = "https://aws.amazon.com/tags"
# AWS's flattened form: one claim per tag, ".../principal_tags/<key>": "<value>".
FLAT_TAG_PREFIX = TAGS_CLAIM + "/principal_tags/"
FLAT_TRANSITIVE_CLAIM = TAGS_CLAIM + "/transitive_tag_keys"
# SeaweedFS reads session tags only from this flat claim, shaped like principal_tags
# (deploy/seaweedfs.md); AWS's reaction to it is unverified.
SEAWEEDFS_TAGS_CLAIM = TAGS_CLAIM + "/principal_tags"
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
TAG_PUNCTUATION = "_.:/=+-@"  # besides Unicode letters, separators (spaces) and numbers
_ASCII_TAG = re.compile(rf"[A-Za-z0-9 {re.escape(TAG_PUNCTUATION)}]*")
# House rule for the keys the broker itself sets (config, `credentials add --tag`): plain ASCII,
# no spaces, so a key reads the same in a policy variable ${aws:PrincipalTag/<key>}.
PLAIN_TAG_KEY = re.compile(rf"[A-Za-z0-9{re.escape(TAG_PUNCTUATION)}]{{1,{MAX_TAG_KEY}}}")


def tag_chars_ok(text: str) -> bool:
    """Only characters STS allows in a tag key or value."""
    if text.isascii():
        return _ASCII_TAG.fullmatch(text) is not None
    # Python's re has no \p{..}: Unicode letters (L), separators (Z) and numbers (N) by category.
    return all(c in TAG_PUNCTUATION or unicodedata.category(c)[0] in "LZN" for c in text)


def aws_prefixed(text: str) -> bool:
    """STS refuses a tag key or value starting with ``aws:`` in any case."""
    return text[:4].lower() == "aws:"


def plain_tag_key_ok(key: str) -> bool:
    """A key the broker may set: plain ASCII, 1-128 characters, no ``aws:`` prefix."""
    return PLAIN_TAG_KEY.fullmatch(key) is not None and not aws_prefixed(key)


def tag_value_ok(value: str) -> bool:
    """A value STS accepts: at most 256 allowed characters, no ``aws:`` prefix."""
    return len(value) <= MAX_TAG_VALUE and not aws_prefixed(value) and tag_chars_ok(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenTags:
    """What a token's claims say about session tags, as given (nothing is dropped or judged).

    ``principal`` is the nested claim's ``principal_tags`` (None when the claim is absent or not
    an object), ``flattened`` AWS's ``.../principal_tags/<key>`` claims, ``transitive`` each
    ``transitive_tag_keys`` given, as ``(form, value)`` with form ``"flattened"`` or ``"nested"``,
    and ``seaweedfs`` SeaweedFS's flat claim (None when absent).
    """

    nested_present: bool
    principal: Any
    flat_names: list[str]  # every flattened claim name, transitive too, in claim order
    flattened: dict[str, Any]  # tag key -> value
    transitive: list[tuple[str, Any]]
    seaweedfs: Any

    @property
    def tags(self) -> dict[str, str]:
        """Well-formed principal tags, nested or flattened (a flattened one wins): key -> value."""
        principal = self.principal if isinstance(self.principal, dict) else {}
        tags: dict[str, Any] = {
            k: v[0]
            for k, v in principal.items()
            if type(v) is list and len(v) == 1 and isinstance(v[0], str)
        }
        tags.update(self.flattened)
        return {k: v for k, v in tags.items() if isinstance(v, str)}

    @property
    def transitive_keys(self) -> list[str]:
        """The transitive tag keys STS reads: the nested form's if given, else the flattened."""
        given = dict(self.transitive)
        keys = given.get("nested", given.get("flattened"))
        return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def read_tags(claims: Mapping[str, Any]) -> TokenTags:
    """The one reader of a token's session tags (nested, AWS-flattened and SeaweedFS forms)."""
    nested = claims.get(TAGS_CLAIM)
    nested = nested if isinstance(nested, dict) else None
    flat_names = [k for k in claims if k.startswith(FLAT_TAG_PREFIX) or k == FLAT_TRANSITIVE_CLAIM]
    transitive: list[tuple[str, Any]] = []
    if FLAT_TRANSITIVE_CLAIM in claims:
        transitive.append(("flattened", claims[FLAT_TRANSITIVE_CLAIM]))
    if nested is not None and "transitive_tag_keys" in nested:
        transitive.append(("nested", nested["transitive_tag_keys"]))
    return TokenTags(
        nested_present=TAGS_CLAIM in claims,
        principal=nested.get("principal_tags") if nested is not None else None,
        flat_names=flat_names,
        flattened={
            k.removeprefix(FLAT_TAG_PREFIX): claims[k]
            for k in flat_names
            if k != FLAT_TRANSITIVE_CLAIM
        },
        transitive=transitive,
        seaweedfs=claims.get(SEAWEEDFS_TAGS_CLAIM),
    )
