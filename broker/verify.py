"""``test-broker verify``: mint, assume the test role, and prove the S3 scoping both ways.

The proof is the upstream one: the own scope is readable, writable and listable, while the
foreign scope (``0xdeadbeef/`` by default) is AccessDenied. Both halves matter: a broader grant
makes the own half pass too, so only the negative control shows isolation. When the proof fails,
``verify_diagnosis`` says in plain words what the pattern of answers usually means (aws-sts-rules.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

from broker.errors import VerifyFailed
from broker.verify_diagnosis import diagnose, token_tags

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

Outcome = Literal["allowed", "denied", "error", "skipped"]
FOREIGN_PREFIX = "0xdeadbeef/"
# The object verify writes in the own scope and reads in the foreign one. Seed it in the foreign
# scope once: with GetObject but no ListBucket, S3 answers a missing key with AccessDenied too.
PROBE_OBJECT = "test-broker-verify.txt"
DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden"})
TokenSource = Callable[[], str]


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where the proof runs: role, bucket, and (for SeaweedFS or a proxy) endpoint overrides."""

    role_arn: str
    bucket: str
    scope_tag: str
    region: str = "us-east-1"
    sts_endpoint: str | None = None
    s3_endpoint: str | None = None
    foreign_prefix: str = FOREIGN_PREFIX
    session_name: str = "test-broker-verify"


@dataclass(frozen=True, kw_only=True)
class Step:
    name: str
    outcome: Outcome
    expected: Outcome
    ms: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == self.expected


@dataclass(frozen=True, kw_only=True)
class Report:
    isolated: bool
    scope: str | None
    foreign_prefix: str
    total_ms: float
    steps: list[Step]
    diagnosis: list[str] = field(default_factory=list)
    next_command: str | None = None

    def as_dict(self) -> dict[str, Any]:
        steps = [
            {"name": s.name, "outcome": s.outcome, "expected": s.expected, "ok": s.ok}
            | {"ms": round(s.ms, 2), "detail": s.detail}
            for s in self.steps
        ]
        return {
            "isolated": self.isolated,
            "scope": self.scope,
            "foreign_prefix": self.foreign_prefix,
            "total_ms": round(self.total_ms, 2),
            "steps": steps,
            "diagnosis": self.diagnosis,
            "next_command": self.next_command,
        }


# -- getting a token -------------------------------------------------------------------------


def _post(client: httpx.Client, path: str, **kwargs: Any) -> dict[str, Any]:
    reply = client.post(path, **kwargs)
    if reply.status_code != 200:
        raise VerifyFailed(f"{client.base_url}{path} answered {reply.status_code}: {reply.text}")
    body: dict[str, Any] = reply.json()
    return body


def federation_token(client: httpx.Client, proof: str) -> TokenSource:
    """The upstream flow: a federation proof buys a session, the session mints."""

    def fetch() -> str:
        session = _post(client, "/session/create", json={"auth_token": proof})["session"]
        return str(_post(client, "/v1/mint-oidc-jwt", headers=_auth(session))["jwt"])

    return fetch


def given_token(token: str) -> TokenSource:
    """A token minted elsewhere (``--token-file``)."""
    return lambda: token


def bearer_token(client: httpx.Client, bearer: str, scope: str | None) -> TokenSource:
    """A CI or personal secret mints directly, optionally for a sub-scope."""
    body = {"scope": scope} if scope else None

    def fetch() -> str:
        return str(_post(client, "/v1/mint-oidc-jwt", headers=_auth(bearer), json=body)["jwt"])

    return fetch


def _auth(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}"}


def token_claims(token: str) -> dict[str, Any]:
    """The payload, unverified: verify only reads it to explain what STS and S3 will see."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error) as exc:
        raise VerifyFailed(f"the token is not a JWT (header.payload.signature): {exc}") from None
    if not isinstance(claims, dict):
        raise VerifyFailed("the token's payload is not a JSON object")
    return claims


def token_scope(claims: dict[str, Any], scope_tag: str) -> str | None:
    for tags in token_tags(claims).values():
        value = tags.get(scope_tag) if isinstance(tags, dict) else None
        if isinstance(value, list) and value and isinstance(value[0], str):
            return value[0]
    # A token without tags still names its scope at top level (upstream's wallet claim).
    top = claims.get(scope_tag)
    return top if isinstance(top, str) else None


# -- the proof -------------------------------------------------------------------------------


class Verifier:
    """Holds the clients, so repeated proofs (the benchmark) pay for boto3 setup once."""

    def __init__(self, target: Target, tokens: TokenSource) -> None:
        import boto3  # only verify and its benchmark pay for boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        self.target = target
        self.tokens = tokens
        self._session = boto3.Session(region_name=target.region)
        self._config = Config(retries={"max_attempts": 1})
        # AssumeRoleWithWebIdentity is an unsigned call: the token is the credential.
        self._sts: STSClient = self._session.client(
            "sts",
            endpoint_url=target.sts_endpoint,
            config=self._config.merge(Config(signature_version=UNSIGNED)),
        )

    def _s3(self, creds: dict[str, Any]) -> S3Client:
        return self._session.client(
            "s3",
            endpoint_url=self.target.s3_endpoint,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            config=self._config,
        )

    def run(self) -> Report:
        t = self.target
        steps: list[Step] = []
        start = time.perf_counter()

        def timed(name: str, expected: Outcome, call: Callable[[], object]) -> Step:
            began = time.perf_counter()
            outcome, detail = _attempt(call)
            step = Step(
                name=name,
                outcome=outcome,
                expected=expected,
                ms=(time.perf_counter() - began) * 1000,
                detail=detail,
            )
            steps.append(step)
            return step

        minted: list[str] = []
        if not timed("token", "allowed", lambda: minted.append(self.tokens())).ok:
            return _finish(self, steps, start, None, None)
        claims = token_claims(minted[0])
        scope = token_scope(claims, t.scope_tag)
        if scope is None:
            raise VerifyFailed(
                f"the token names no scope (no {t.scope_tag!r} tag or claim); "
                "check the broker's scope_tag or pass --scope-tag"
            )
        creds: dict[str, Any] = {}

        def assume() -> None:
            reply = self._sts.assume_role_with_web_identity(
                RoleArn=t.role_arn, RoleSessionName=t.session_name, WebIdentityToken=minted[0]
            )
            creds.update(reply["Credentials"])

        if not timed("assume role", "allowed", assume).ok:
            return _finish(self, steps, start, scope, claims)
        s3 = self._s3(creds)
        own, foreign = f"{scope}/", t.foreign_prefix
        b = t.bucket
        body = f"written by test-broker verify at {int(time.time())}\n".encode()
        timed(
            "put own", "allowed", lambda: s3.put_object(Bucket=b, Key=own + PROBE_OBJECT, Body=body)
        )
        timed(
            "get own",
            "allowed",
            lambda: s3.get_object(Bucket=b, Key=own + PROBE_OBJECT)["Body"].read(),
        )
        timed("list own", "allowed", lambda: s3.list_objects_v2(Bucket=b, Prefix=own, MaxKeys=5))
        timed(
            "get foreign",
            "denied",
            lambda: s3.get_object(Bucket=b, Key=foreign + PROBE_OBJECT)["Body"].read(),
        )
        timed(
            "list foreign",
            "denied",
            lambda: s3.list_objects_v2(Bucket=b, Prefix=foreign, MaxKeys=5),
        )
        return _finish(self, steps, start, scope, claims)


def _attempt(call: Callable[[], object]) -> tuple[Outcome, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        call()
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code, message = str(err.get("Code", "")), str(err.get("Message", ""))
        if code == "NoSuchKey":
            return "allowed", "NoSuchKey: the read was authorised, the object is absent"
        outcome: Outcome = "denied" if code in DENIED_CODES else "error"
        return outcome, f"{code}: {message}"
    except (BotoCoreError, httpx.HTTPError, VerifyFailed) as exc:
        return "error", f"{type(exc).__name__}: {exc}"
    return "allowed", ""


def _finish(
    verifier: Verifier,
    steps: list[Step],
    start: float,
    scope: str | None,
    claims: dict[str, Any] | None,
) -> Report:
    t = verifier.target
    complete = bool(steps) and steps[-1].name == "list foreign"
    isolated = complete and all(s.ok for s in steps)
    lines, next_command = ([], None) if isolated else diagnose(steps, claims, t)
    return Report(
        isolated=isolated,
        scope=scope,
        foreign_prefix=t.foreign_prefix,
        total_ms=(time.perf_counter() - start) * 1000,
        steps=steps,
        diagnosis=lines,
        next_command=next_command,
    )
