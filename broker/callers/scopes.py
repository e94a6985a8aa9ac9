"""Scopes (the S3 key prefix a token grants) and the allowance patterns that bound them.

A scope is ``/``-separated segments of ``[A-Za-z0-9_.:=+@-]`` (a strict subset of the STS tag
charset, :mod:`broker.sts.tags`), at most 256 characters (a tag value's limit), no empty, ``.`` or ``..`` segment. An allowance pattern is a
scope whose segments may hold one ``*`` each (one or more characters within the segment; one
per segment keeps matching linear) and may end in ``/**`` (zero or more further segments). Every caller's allowance starts with a literal
``<kind>/<name>`` prefix and names are unique per kind, so allowances of different callers
can never overlap — nor the federation wallets (``0x…``, one segment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from broker.errors import ScopeMalformed
from broker.sts.tags import MAX_TAG_VALUE, TAG_PUNCTUATION

MAX_SCOPE = MAX_TAG_VALUE  # the scope is a tag value
# STS's tag punctuation less '/', which separates segments; '-' goes last, escaped, so the
# class reads the same to Python and to JSON Schema (the pattern is in the OpenAPI document).
_PUNCT = TAG_PUNCTUATION.replace("/", "").replace("-", "")
_CHAR = rf"[A-Za-z0-9{_PUNCT}\-]"
_NO_DOT = rf"[A-Za-z0-9{_PUNCT.replace('.', '')}\-]"
_SEGMENT = rf"{_CHAR}+"
# A segment that is not "." or "..", spelled without lookahead so that it is also the JSON
# Schema pattern of the mint body's scope (hypothesis generates from it in the API fuzz test).
_WHOLE_SEGMENT = rf"(?:{_NO_DOT}{_CHAR}*|\.{_NO_DOT}{_CHAR}*|\.\.{_CHAR}+)"
SCOPE_PATTERN = rf"^{_WHOLE_SEGMENT}(?:/{_WHOLE_SEGMENT})*$"
_SCOPE = re.compile(SCOPE_PATTERN)
_PATTERN_SEGMENT = re.compile(rf"[A-Za-z0-9{_PUNCT}\-*]+")
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
WALLET = re.compile(r"0x[0-9a-f]{40}")


def check_scope(scope: str) -> str:
    if len(scope) > MAX_SCOPE:
        raise ScopeMalformed(f"scope is {len(scope)} characters; at most {MAX_SCOPE}")
    if not _SCOPE.fullmatch(scope):
        raise ScopeMalformed(
            f"scope {scope[:80]!r} is malformed: use '/'-separated segments of "
            "A-Z a-z 0-9 _ . : = + @ -, no empty, '.' or '..' segment, no leading or trailing '/'"
        )
    return scope


@dataclass(frozen=True)
class Allowance:
    """What a credential may mint: scopes matching ``pattern``."""

    pattern: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(_compile(self.pattern)))

    def allows(self, scope: str) -> bool:
        regex: re.Pattern[str] = self.__dict__["_regex"]
        return regex.fullmatch(scope) is not None


def _compile(pattern: str) -> str:
    body, below = (pattern[:-3], True) if pattern.endswith("/**") else (pattern, False)
    parts = []
    for segment in body.split("/"):
        if not _PATTERN_SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise ScopeMalformed(f"allowance pattern {pattern!r} has a bad segment {segment!r}")
        if segment.count("*") > 1:  # several would make the regex backtrack exponentially
            raise ScopeMalformed(
                f"allowance pattern {pattern!r}: at most one '*' per segment ({segment!r})"
            )
        parts.append(_SEGMENT.join(re.escape(p) for p in segment.split("*")))
    regex = "/".join(parts)
    return f"{regex}(?:/{_SEGMENT})*" if below else regex


def allowance_for(kind: str, name: str, pattern: str | None) -> Allowance:
    """The allowance of a CI or dev credential; it must stay under ``<kind>/<name>``."""
    if not NAME.fullmatch(name):
        raise ScopeMalformed(f"name {name!r} must be 1-63 of a-z 0-9 - (starting alphanumeric)")
    home = f"{kind}/{name}"
    if kind == "dev":
        if pattern not in (None, f"{home}/**"):
            raise ScopeMalformed(f"a personal secret's allowance is always {home}/**")
        return Allowance(f"{home}/**")
    chosen = pattern or f"{home}/**"
    head = chosen.split("/")
    if head[:2] != [kind, name] or len(head) < 3 or len(chosen) > MAX_SCOPE:
        raise ScopeMalformed(
            f"scope pattern {chosen!r} must start with {home}/ (e.g. {home}/pr-*/run-*)"
        )
    return Allowance(chosen)
