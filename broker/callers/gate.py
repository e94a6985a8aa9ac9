"""Who a bearer is and what it may mint: one decision for every caller kind.

``fps_…`` is a federation-proof session (its wallet is its only scope), ``otb_…`` a CI or
personal credential (a scope inside its allowance). Anything else, or a kind that is not
enabled, is the same Unauthorized.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.callers import credentials
from broker.callers.claims import CallerKind, MintRequest
from broker.callers.federation import SESSION_PREFIX, FederationProof
from broker.callers.scopes import check_scope
from broker.config import Settings
from broker.errors import ScopeMalformed, ScopeNotAllowed, StoreUnavailable, Unauthorized
from broker.store import Store, StoreError


class Gate:
    def __init__(
        self,
        settings: Settings,
        federation: FederationProof | None,
        store: Store | None,
    ) -> None:
        self._max_ttl = settings.max_token_ttl_seconds
        self.federation = federation
        self._store = store

    @property
    def enabled(self) -> bool:
        return self.federation is not None or self._store is not None

    def authenticate(self, bearer: str, now: int) -> Caller:
        if bearer.startswith(SESSION_PREFIX) and self.federation is not None:
            session = self.federation.resolve(bearer, now)
            return Caller(kind="fed", caller_id=session.wallet, credential=None)
        if credentials.is_credential_bearer(bearer) and self._store is not None:
            try:
                credential = credentials.authenticate(self._store, bearer, now)
            except StoreError as exc:  # locked, I/O error, damaged file: not the caller's fault
                raise StoreUnavailable(f"credential store unavailable ({exc}); try again") from None
            return Caller(kind=credential.kind, caller_id=credential.id, credential=credential)
        raise Unauthorized()

    def authorize(self, caller: Caller, scope: str | None) -> MintRequest:
        """The mint request ``caller`` may make for ``scope``; refused, never narrowed."""
        credential = caller.credential
        if credential is None:  # a federation session: its wallet is its only scope
            if scope is not None and scope != caller.caller_id:
                raise ScopeNotAllowed(
                    f"a federation-proof session may only mint its own wallet {caller.caller_id}; "
                    "omit 'scope' or send that value"
                )
            return MintRequest(
                kind="fed",
                caller_id=caller.caller_id,
                scope=caller.caller_id,
                max_ttl=self._max_ttl,
            )
        credential.check_intact()
        if scope is None:
            if credential.kind == "ci":
                raise ScopeMalformed(
                    f"a CI bearer must ask for a scope matching {credential.allowance.pattern}",
                    allowance=credential.allowance.pattern,
                )
            scope = credential.home
        check_scope(scope)
        if not credential.allowance.allows(scope):
            raise ScopeNotAllowed(
                f"scope {scope!r} is outside this credential's allowance "
                f"{credential.allowance.pattern!r}; ask for a scope inside it",
                allowance=credential.allowance.pattern,
            )
        return MintRequest(
            kind=credential.kind,
            caller_id=credential.id,
            scope=scope,
            max_ttl=min(credential.max_ttl, self._max_ttl),
            extra_tags=credential.extra_tags,
        )


@dataclass(frozen=True)
class Caller:
    """An authenticated caller, before it is known what it asks for."""

    kind: CallerKind
    caller_id: str
    credential: credentials.Credential | None
