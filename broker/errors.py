"""Every error the broker reports, over HTTP or on the command line, with its stable code.

Class, code, then the HTTP status the API answers with; ``exit N`` marks an error only a
command reports, with its exit code (a command reporting an HTTP error exits ``exit_code``, 1).
The tree is generated from the classes (``python -m broker.docs``; tests/server/test_errors.py):

    BrokerError                   internal_error          500
    ├── BadRequest                bad_request             400
    │   ├── InvalidJson           invalid_json            400
    │   ├── InvalidRequest        invalid_request         400
    │   │   └── ScopeMalformed    scope_malformed         400
    │   ├── StsRuleViolation      sts_rule_violation      400
    │   ├── TtlTooLong            ttl_too_long            400
    │   ├── ClientDisconnected    client_disconnected     400
    │   ├── InvalidGrant          invalid_grant           400
    │   ├── UnsupportedGrantType  unsupported_grant_type  400
    │   └── InvalidScope          invalid_scope           400
    ├── Unauthorized              unauthorized            401
    ├── ScopeNotAllowed           scope_not_allowed       403
    ├── NotFound                  not_found               404
    ├── MethodNotAllowed          method_not_allowed      405
    ├── BodyTooLarge              body_too_large          413
    ├── RequestTimeout            request_timeout         408
    ├── HeaderTooLarge            header_too_large        431
    ├── TooManyConnections        too_many_connections    503
    ├── UnsupportedMediaType      unsupported_media_type  415
    ├── NotReady                  not_ready               503
    ├── KeyStoreError             key_store_error         exit 1
    │   ├── KeyNotFound           key_not_found           exit 1
    │   └── TooManyKeys           too_many_keys           exit 1
    ├── CredentialNotFound        credential_not_found    exit 1
    ├── CredentialExists          credential_exists       exit 1
    ├── AuditUnavailable          audit_unavailable       503
    ├── StoreUnavailable          store_unavailable       503
    │   └── CredentialDamaged     credential_damaged      503
    ├── IssuerUnavailable         issuer_unavailable      503
    ├── RateLimited               rate_limited            429
    ├── IssuerNotConformant       issuer_not_conformant   exit 1
    ├── VerifyFailed              verify_failed           exit 1
    ├── AccountMismatch           account_mismatch        exit 1
    ├── AwsCallFailed             aws_call_failed         exit 1
    ├── ConfigError               config_error            exit 2
    ├── InputFileError            input_file_error        exit 2
    │   └── TrustPolicyInvalid    trust_policy_invalid    exit 2
    ├── BrokerRefused             broker_refused          exit 1
    ├── BrokerUnavailable         broker_unavailable      exit 1
    ├── LocalIoError              io_error                exit 1
    └── ReapRefused               reap_refused            exit 1

A code is part of the contract: never rename one once shipped. The HTTP body is always
``{"error": code, "message": sentence}`` (a refused scope adds the credential's ``allowance``); the
message says what to do about it. A command prints
``error: <message>`` as one line on stderr, or that body with ``--json``, and exits ``exit_code``.
"""

from __future__ import annotations

from typing import ClassVar


class BrokerError(Exception):
    """An unexpected failure; the broker never answers bad input with it."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500  # the HTTP status the API answers with (unused when cli_only)
    exit_code: ClassVar[int] = 1  # what a command exits with when it reports this error
    cli_only: ClassVar[bool] = False  # raised only by commands, never an HTTP answer

    def __init__(self, message: str, **detail: str) -> None:
        super().__init__(message)
        self.message = message
        # Machine-readable facts beside the sentence (``allowance`` on a credential's scope
        # refusals), so a client acts on them without parsing the message.
        self.detail = detail

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message, **self.detail}


class BadRequest(BrokerError):
    """The request is malformed."""

    code = "bad_request"
    status = 400


class InvalidJson(BadRequest):
    """The body is not valid JSON."""

    code = "invalid_json"


class InvalidRequest(BadRequest):
    """The body or a header is well-formed but not what the route takes."""

    code = "invalid_request"


class StsRuleViolation(BadRequest):
    """The token the broker was about to return breaks an AWS STS rule; it is never returned."""

    code = "sts_rule_violation"


class TtlTooLong(BadRequest):
    """The requested token lifetime is above what this caller may have."""

    code = "ttl_too_long"


class ClientDisconnected(BadRequest):
    """The client closed the connection before its whole request body arrived."""

    code = "client_disconnected"


class InvalidGrant(BadRequest):
    """Token exchange: the subject token is not one this broker trusts (RFC 6749 code)."""

    code = "invalid_grant"


class UnsupportedGrantType(BadRequest):
    """Token exchange: grant_type is not RFC 8693's token-exchange grant (RFC 6749 code)."""

    code = "unsupported_grant_type"


class InvalidScope(BadRequest):
    """Token exchange: the requested scope is not the derived scope or below it (RFC 6749)."""

    code = "invalid_scope"


class Unauthorized(BrokerError):
    """Bad bearer; one fixed body whatever the cause, so nobody can probe which exist."""

    code = "unauthorized"
    status = 401
    MESSAGE: ClassVar[str] = (
        "Missing, malformed, unknown, expired or revoked bearer; "
        "send 'Authorization: Bearer <session or secret>' with a valid one."
    )

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class ScopeNotAllowed(BrokerError):
    """The requested scope is outside the caller's allowance (never narrowed silently)."""

    code = "scope_not_allowed"
    status = 403


class NotFound(BrokerError):
    """No such route (also what a disabled caller kind's routes answer)."""

    code = "not_found"
    status = 404


class MethodNotAllowed(BrokerError):
    """The route exists but not for this method; see the Allow header."""

    code = "method_not_allowed"
    status = 405


class BodyTooLarge(BrokerError):
    """The request body is above max_body_bytes."""

    code = "body_too_large"
    status = 413


class RequestTimeout(BrokerError):
    """The request line and headers, or the body, did not arrive within their time limit."""

    code = "request_timeout"
    status = 408


class HeaderTooLarge(BrokerError):
    """The request line and headers are above max_header_bytes."""

    code = "header_too_large"
    status = 431


class TooManyConnections(BrokerError):
    """The broker is at max_connections and none could be closed to make room; retry."""

    code = "too_many_connections"
    status = 503


class UnsupportedMediaType(BrokerError):
    """A body was sent without Content-Type: application/json."""

    code = "unsupported_media_type"
    status = 415


class NotReady(BrokerError):
    """A readiness check failed (see /readyz)."""

    code = "not_ready"
    status = 503


class KeyStoreError(BrokerError):
    """The key store cannot be read or changed as asked."""

    code = "key_store_error"
    cli_only = True


class KeyNotFound(KeyStoreError):
    """`keys remove` named a kid the store does not hold."""

    code = "key_not_found"


class TooManyKeys(KeyStoreError):
    """A rotation would publish more than max_published_keys."""

    code = "too_many_keys"


class ScopeMalformed(InvalidRequest):
    """The requested scope or pattern breaks the scope grammar."""

    code = "scope_malformed"


class CredentialNotFound(BrokerError):
    """No live credential has that id or name."""

    code = "credential_not_found"
    cli_only = True


class CredentialExists(BrokerError):
    """A live credential of that kind already has that name."""

    code = "credential_exists"
    cli_only = True


class AuditUnavailable(BrokerError):
    """The audit record could not be committed, so the token is withheld."""

    code = "audit_unavailable"
    status = 503


class StoreUnavailable(BrokerError):
    """The credential store could not be read, so the caller cannot be checked; retry."""

    code = "store_unavailable"
    status = 503


class CredentialDamaged(StoreUnavailable):
    """The caller's credential row was damaged outside the CLI; an operator must replace it."""

    code = "credential_damaged"


class IssuerUnavailable(BrokerError):
    """Token exchange: a trusted issuer's discovery or JWKS could not be fetched; retry."""

    code = "issuer_unavailable"
    status = 503


class RateLimited(BrokerError):
    """Too many requests from this caller or address; see Retry-After."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IssuerNotConformant(BrokerError):
    """The broker's own discovery or JWKS would make AWS STS refuse every token; it won't start."""

    code = "issuer_not_conformant"
    cli_only = True


class VerifyFailed(BrokerError):
    """`verify` could not run the proof: no usable token, or the broker refused to mint."""

    code = "verify_failed"
    cli_only = True


class AccountMismatch(BrokerError):
    """The AWS credentials belong to another account than the config's aws_account_id."""

    code = "account_mismatch"
    cli_only = True


class AwsCallFailed(BrokerError):
    """An AWS call of `aws plan`, `aws apply` or `reap` failed; the message names the call and the answer."""

    code = "aws_call_failed"
    cli_only = True


class ConfigError(BrokerError):
    """The configuration or an option cannot be used; the message names the field and the fix."""

    code = "config_error"
    exit_code = 2
    cli_only = True


class InputFileError(BrokerError):
    """A file named by an option (--token @F, --jwks, --trust-policy, --token-file, ...) is unusable."""

    code = "input_file_error"
    exit_code = 2
    cli_only = True


class TrustPolicyInvalid(InputFileError):
    """The trust policy is JSON but no policy document; the message says what is wrong."""

    code = "trust_policy_invalid"


class BrokerRefused(BrokerError):
    """A client command's request was refused by the broker (a 4xx); the message carries its code."""

    code = "broker_refused"
    cli_only = True

    def __init__(
        self, status: int, broker_code: str, broker_message: str, allowance: str | None = None
    ) -> None:
        super().__init__(
            f"the broker refused the request ({status} {broker_code}): {broker_message}"
        )
        self.broker_status = status
        self.broker_code = broker_code
        self.allowance = allowance  # what the broker said the credential may mint, if it did


class BrokerUnavailable(BrokerError):
    """A client command could not reach the broker, or it kept failing (5xx), after retries."""

    code = "broker_unavailable"
    cli_only = True


class LocalIoError(BrokerError):
    """A local file, directory, port or the database failed (permissions, disk, a damaged store)."""

    code = "io_error"
    cli_only = True


class ReapRefused(BrokerError):
    """`reap` deleted nothing: a bucket, scope or key outside the run prefixes, or no patterns."""

    code = "reap_refused"
    cli_only = True


def all_error_classes() -> list[type[BrokerError]]:
    """Every class of the tree, depth first in definition order: the docstring and README order."""
    found: list[type[BrokerError]] = []

    def walk(cls: type[BrokerError]) -> None:
        found.append(cls)
        for sub in cls.__subclasses__():
            walk(sub)

    walk(BrokerError)
    return found


def render_tree() -> str:
    """The tree drawn in this module's docstring: class, code, HTTP status or CLI exit code."""
    rows: list[tuple[str, type[BrokerError]]] = []

    def walk(cls: type[BrokerError], prefix: str, branch: str) -> None:
        rows.append((prefix + branch + cls.__name__, cls))
        subs = cls.__subclasses__()
        inner = prefix + ("" if not branch else "    " if branch == "└── " else "│   ")
        for i, sub in enumerate(subs):
            walk(sub, inner, "└── " if i == len(subs) - 1 else "├── ")

    walk(BrokerError, "", "")
    name_width = max(len(name) for name, _ in rows) + 2
    code_width = max(len(cls.code) for _, cls in rows) + 2
    lines = []
    for name, cls in rows:
        where = f"exit {cls.exit_code}" if cls.cli_only else str(cls.status)
        lines.append(f"    {name.ljust(name_width)}{cls.code.ljust(code_width)}{where}")
    return "\n".join(lines)
