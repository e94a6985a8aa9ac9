"""``test-broker verify``: mint, assume the test role, and prove the S3 scoping both ways.

The proof is the upstream one: the own scope is readable, writable and listable, while the
foreign scope (``0xdeadbeef/`` by default) is AccessDenied. Both halves matter: a broader grant
makes the own half pass too, so only the negative control shows isolation. When the proof fails,
``verify_diagnosis`` says in plain words what the pattern of answers usually means (docs/sts-rules.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import httpx

from broker.aws.diagnosis import explain, token_tags
from broker.aws.proof import Outcome, Step, Target
from broker.errors import VerifyFailed
from broker.sts.jwt_text import parse_token

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sts import STSClient

# The object verify writes in the own scope and reads in the foreign one. Seed it in the foreign
# scope once: with GetObject but no ListBucket, S3 answers a missing key with AccessDenied too,
# so a denied foreign read proves nothing unless the object is known to exist (ProbeCheck).
PROBE_OBJECT = "test-broker-verify.txt"
DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden"})
TokenSource = Callable[[], str]
# Does the foreign probe exist? (True/False, or None when it cannot be told) and why.
ProbeCheck = Callable[[str, str], tuple[bool | None, str]]


@dataclass(frozen=True, kw_only=True)
class ProofReport:
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


def _post(client: httpx.Client, path: str, field: str, **kwargs: Any) -> str:
    """POST and return one string field of the JSON reply; anything else is a failed step."""
    url = f"{client.base_url}{path}"
    reply = client.post(path, **kwargs)
    if reply.status_code != 200:
        raise VerifyFailed(f"{url} answered {reply.status_code}: {_snippet(reply.text)}")
    try:
        body = reply.json()
    except ValueError:  # HTML from a proxy or the wrong host, not the broker
        raise VerifyFailed(f"{url} answered 200 but not JSON: {_snippet(reply.text)}") from None
    value = body.get(field) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise VerifyFailed(f"{url} answered JSON without a {field!r} string: is it the broker?")
    return value


def _snippet(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= 120 else one_line[:117] + "..."


def federation_token(client: httpx.Client, proof: str) -> TokenSource:
    """The upstream flow: a federation proof buys a session, the session mints."""

    def fetch() -> str:
        session = _post(client, "/session/create", "session", json={"auth_token": proof})
        return _post(client, "/v1/mint-oidc-jwt", "jwt", headers=_auth(session))

    return fetch


def given_token(token: str) -> TokenSource:
    """A token minted elsewhere (``--token-file``)."""
    return lambda: token


def bearer_token(client: httpx.Client, bearer: str, scope: str | None) -> TokenSource:
    """A CI or personal secret mints directly, optionally for a sub-scope."""
    body = {"scope": scope} if scope else None

    def fetch() -> str:
        return _post(client, "/v1/mint-oidc-jwt", "jwt", headers=_auth(bearer), json=body)

    return fetch


def _auth(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}"}


def read_claims(token: str) -> dict[str, Any]:
    """The payload, unverified: verify only reads it to explain what STS and S3 will see."""
    parsed = parse_token(token.strip())
    if parsed is None:
        raise VerifyFailed(
            "the token is not a JWT (three base64url parts, header and claims JSON objects)"
        )
    return parsed.claims


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

    def __init__(
        self, target: Target, tokens: TokenSource, probe_check: ProbeCheck | None = None
    ) -> None:
        import boto3  # only verify and its benchmark pay for boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        self.target = target
        self.tokens = tokens
        self.probe_check = probe_check
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

    def run(self) -> ProofReport:
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
        claims = read_claims(minted[0])
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
        get_foreign = timed(
            "get foreign",
            "denied",
            lambda: s3.get_object(Bucket=b, Key=foreign + PROBE_OBJECT)["Body"].read(),
        )
        if get_foreign.outcome == "denied":
            steps[-1] = self._prove_denial(get_foreign, foreign + PROBE_OBJECT)
        timed(
            "list foreign",
            "denied",
            lambda: s3.list_objects_v2(Bucket=b, Prefix=foreign, MaxKeys=5),
        )
        return _finish(self, steps, start, scope, claims)

    def _prove_denial(self, step: Step, key: str) -> Step:
        """A denied read counts only if the object exists; the role itself cannot tell."""
        exists, how = (
            (None, "no existence check given")
            if self.probe_check is None
            else self.probe_check(self.target.bucket, key)
        )
        if exists:
            return replace(step, detail=f"{step.detail} (the object exists: {how})")
        why = "it does not exist" if exists is False else f"its existence is unknown ({how})"
        return replace(
            step,
            outcome="unproven",
            detail=f"{step.detail} but {key} proves nothing: {why}, and S3 also answers a "
            "missing key with AccessDenied when ListBucket is not granted",
        )


def asserted_probe(who: str) -> ProbeCheck:
    """The person says the probe exists (they seeded it); the report says who said so."""
    return lambda _bucket, _key: (True, f"asserted with {who}")


def ambient_probe_check(target: Target) -> ProbeCheck:
    """HeadObject with the caller's own AWS credentials (never the role's), read-only.

    The role cannot see the foreign probe (that is the point), so existence has to come from
    whoever seeded it; without such credentials the foreign read stays unproven.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    def check(bucket: str, key: str) -> tuple[bool | None, str]:
        session = boto3.Session(region_name=target.region)
        if session.get_credentials() is None:
            return None, "no AWS credentials of your own to check it with HeadObject"
        s3 = session.client(
            "s3", endpoint_url=target.s3_endpoint, config=Config(retries={"max_attempts": 1})
        )
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False, "HeadObject with your credentials: 404"
            return None, f"HeadObject with your credentials: {code}"
        except BotoCoreError as exc:
            return None, f"HeadObject with your credentials: {exc}"
        return True, "HeadObject with your credentials found it"

    return check


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
) -> ProofReport:
    t = verifier.target
    complete = bool(steps) and steps[-1].name == "list foreign"
    isolated = complete and all(s.ok for s in steps)
    lines, next_command = ([], None) if isolated else explain(steps, claims, t)
    return ProofReport(
        isolated=isolated,
        scope=scope,
        foreign_prefix=t.foreign_prefix,
        total_ms=(time.perf_counter() - start) * 1000,
        steps=steps,
        diagnosis=lines,
        next_command=next_command,
    )
