"""Every error the broker reports, with its stable machine code.

    BrokerError                      internal_error          500
    ├── BadRequest                   bad_request             400
    │   ├── InvalidJson              invalid_json            400
    │   ├── InvalidRequest           invalid_request         400
    │   ├── StsRuleViolation         sts_rule_violation      400
    │   └── TtlTooLong               ttl_too_long            400
    ├── Unauthorized                 unauthorized            401
    ├── ScopeNotAllowed              scope_not_allowed       403
    ├── NotFound                     not_found               404
    ├── MethodNotAllowed             method_not_allowed      405
    ├── BodyTooLarge                 body_too_large          413
    ├── UnsupportedMediaType         unsupported_media_type  415
    ├── NotReady                     not_ready               503
    └── KeyStoreError                key_store_error         (CLI only)
        ├── KeyNotFound              key_not_found
        └── TooManyKeys              too_many_keys

A code is part of the contract: never rename one once shipped. The HTTP body is always
``{"error": code, "message": sentence}``; the message says what to do about it.
"""

from __future__ import annotations

from typing import ClassVar


class BrokerError(Exception):
    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}


class BadRequest(BrokerError):
    code = "bad_request"
    status = 400


class InvalidJson(BadRequest):
    code = "invalid_json"


class InvalidRequest(BadRequest):
    code = "invalid_request"


class StsRuleViolation(BadRequest):
    """The token the broker was about to return breaks an AWS STS rule; it is never returned."""

    code = "sts_rule_violation"


class TtlTooLong(BadRequest):
    code = "ttl_too_long"


class Unauthorized(BrokerError):
    """One fixed body whatever the cause, so callers cannot probe which credentials exist."""

    code = "unauthorized"
    status = 401
    MESSAGE: ClassVar[str] = (
        "Missing, malformed, unknown, expired or revoked bearer; "
        "send 'Authorization: Bearer <session or secret>' with a valid one."
    )

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class ScopeNotAllowed(BrokerError):
    code = "scope_not_allowed"
    status = 403


class NotFound(BrokerError):
    code = "not_found"
    status = 404


class MethodNotAllowed(BrokerError):
    code = "method_not_allowed"
    status = 405


class BodyTooLarge(BrokerError):
    code = "body_too_large"
    status = 413


class UnsupportedMediaType(BrokerError):
    code = "unsupported_media_type"
    status = 415


class NotReady(BrokerError):
    code = "not_ready"
    status = 503


class KeyStoreError(BrokerError):
    code = "key_store_error"


class KeyNotFound(KeyStoreError):
    code = "key_not_found"


class TooManyKeys(KeyStoreError):
    code = "too_many_keys"


def all_error_classes() -> list[type[BrokerError]]:
    """Every class of the tree, for the uniqueness test and the README table."""
    found: list[type[BrokerError]] = [BrokerError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found
