"""``Client``: one broker and one credential, with the calls a test run needs.

The module-level functions in ``broker.client`` use one default ``Client`` built from the
environment contract; the pytest plugin builds its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.client import runs
from broker.client.broker_api import BrokerApi, MintedToken
from broker.client.environment import ClientConfig, config_from_env
from broker.client.tokens import TokenCache
from broker.errors import BrokerRefused, ConfigError, ScopeNotAllowed

if TYPE_CHECKING:
    import boto3


@dataclass(frozen=True)
class Namespace:
    """Where a caller may work: ``home`` is its own scope root (``ci/<name>``, ``dev/<name>``, or
    a federation wallet); ``allowance`` the pattern a CI credential's scopes must match."""

    home: str
    allowance: str | None
    federation: bool

    def contains(self, scope: str) -> bool:
        return scope == self.home or scope.startswith(self.home + "/")


class Client:
    """Tokens, the run scope, AWS sessions and cleanup for one credential at one broker."""

    def __init__(self, config: ClientConfig, api: BrokerApi | None = None) -> None:
        self.config = config
        self.api = api or BrokerApi(config)
        self.tokens = TokenCache(self.api.mint)
        self._lock = threading.Lock()
        self._namespace: Namespace | None = None
        self._run_scope: str | None = None

    def close(self) -> None:
        self.api.close()

    def mint(self, scope: str | None = None, ttl: int | None = None) -> MintedToken:
        """A fresh token (never cached)."""
        return self.api.mint(scope, ttl)

    def namespace(self) -> Namespace:
        """Learned from the broker, not guessed: a mint without a scope.

        A federation session or personal secret gets its own scope (its wallet or
        ``dev/<name>``); a CI bearer is refused, and the refusal names its allowance, whose
        first two segments are always its ``ci/<name>`` (broker/callers/scopes.py).
        """
        with self._lock:
            if self._namespace is None:
                self._namespace = self._learn_namespace()
            return self._namespace

    def _learn_namespace(self) -> Namespace:
        try:
            token = self.api.mint()
        except BrokerRefused as refused:
            if refused.allowance is None:
                raise
            home = "/".join(refused.allowance.split("/")[:2])
            return Namespace(home=home, allowance=refused.allowance, federation=False)
        self.tokens.put(None, None, token)
        # An exchanged job token's scope is already this run's (built from the job's claims).
        return Namespace(home=token.scope, allowance=None, federation=self.config.federation)

    def run_scope(self) -> str:
        """This run's prefix: TEST_BROKER_SCOPE, else the CI run, else a local run, in the
        caller's namespace. The same for the life of this client."""
        with self._lock:
            if self._run_scope is not None:
                return self._run_scope
        scope = self.config.scope or self._default_run_scope()
        with self._lock:
            self._run_scope = self._run_scope or scope
            return self._run_scope

    def _default_run_scope(self) -> str:
        ns = self.namespace()
        if self.config.exchange:  # the broker derived the run from the job's own claims
            return ns.home
        candidates = runs.ci_run_candidates() or [runs.local_run()]
        if ns.allowance is None:  # anything below home is ours
            return f"{ns.home}/{candidates[0]}"
        refusal: BrokerRefused | None = None
        for relative in candidates:  # the broker decides which shape the allowance takes
            scope = f"{ns.home}/{relative}"
            try:
                self.tokens.put(scope, None, self.api.mint(scope))
            except BrokerRefused as refused:
                if refused.broker_code != ScopeNotAllowed.code:
                    raise
                refusal = refused
                continue
            return scope
        assert refusal is not None  # noqa: S101 - candidates is never empty
        raise refusal

    def token_scope(self, scope: str | None) -> str | None:
        """The scope to mint for work under ``scope``: a federation session only has its wallet."""
        if scope is None:
            scope = self.run_scope()
        return None if self.namespace().federation else scope

    def default_scope(self) -> str | None:
        """What ``test-broker token`` asks for: TEST_BROKER_SCOPE; in CI the run's scope, in the
        shape the allowance takes; elsewhere nothing, so the broker gives the caller's own."""
        if self.config.scope:
            return self.config.scope
        if self.config.exchange or runs.ci_run_candidates() is None:
            return None
        return self.token_scope(None)

    def token(self, scope: str | None = None, ttl: int | None = None) -> MintedToken:
        """A cached token for ``scope`` (default: the run scope), fresh for a while yet."""
        return self.tokens.get(self.token_scope(scope), ttl)

    def get_test_jwt(self, scope: str | None = None, ttl: int | None = None) -> str:
        return self.token(scope, ttl).jwt

    def aws_session(
        self,
        scope: str | None = None,
        *,
        ttl: int | None = None,
        role_arn: str | None = None,
        duration_seconds: int | None = None,
    ) -> boto3.Session:
        """A boto3 Session assuming the test role with tokens for ``scope`` (default: the run
        scope); its credentials refresh themselves, minting again when they must.

        ``duration_seconds`` is the STS session's (AssumeRoleWithWebIdentity DurationSeconds,
        900 to the role's maximum; default: STS's, one hour).
        """
        from broker.client.aws_access import web_identity_session

        role = role_arn or self.config.role_arn
        if not role:
            raise ConfigError("no role ARN: pass role_arn or set TEST_BROKER_ROLE_ARN")
        scope = scope or self.run_scope()
        return web_identity_session(
            lambda: self.get_test_jwt(scope, ttl),
            role_arn=role,
            name=runs.session_name(scope),
            duration_seconds=duration_seconds,
        )

    def cleanup_scope(
        self,
        prefix: str | None = None,
        *,
        bucket: str | None = None,
        session: boto3.Session | None = None,
    ) -> int:
        """Delete every object under ``prefix`` (default: the run scope) in the test bucket.

        Idempotent (a second call deletes nothing); refuses the bucket's root and any prefix
        outside the caller's own namespace. Returns how many objects it deleted.
        """
        from broker.client.aws_access import delete_prefix

        target = (prefix if prefix is not None else self.run_scope()).strip("/")
        home = self.namespace().home
        if not target or any(seg in ("", ".", "..") for seg in target.split("/")):
            raise ScopeNotAllowed(f"refusing to clean up {prefix!r}: name a run prefix")
        if not self.namespace().contains(target):
            raise ScopeNotAllowed(
                f"refusing to clean up {target!r}: it is outside this caller's scope {home!r}"
            )
        name = bucket or self.config.bucket
        if not name:
            raise ConfigError("no test bucket: pass bucket or set TEST_BROKER_BUCKET")
        if session is None:
            # Below the run scope, the run's own token reaches it (a CI allowance such as
            # ci/<name>/pr-*/run-* would refuse a token for the deeper prefix itself).
            run = self.run_scope()
            session = self.aws_session(run if target.startswith(run + "/") else target)
        return delete_prefix(session, name, target + "/")


_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The process's client, from the environment contract on first use."""
    global _default  # one client per process, built lazily
    with _default_lock:
        if _default is None:
            _default = Client(config_from_env())
        return _default
