"""The broker's minting API over HTTP: retries for outages, the broker's own words for refusals.

Connection errors and 5xx answers are retried with exponential backoff (a broker restarting, a
proxy between deploys); a 4xx is the caller's to fix and is never retried.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from broker.client.environment import ClientConfig
from broker.errors import BrokerRefused, BrokerUnavailable

ATTEMPTS = 4
FIRST_BACKOFF = 0.25  # seconds; doubled per attempt, with jitter: 0.25, 0.5, 1 (about 2 s in all)
TIMEOUT = 10.0
MINT_PATH = "/v1/mint-oidc-jwt"
SESSION_PATH = "/session/create"
EXCHANGE_PATH = "/v1/token-exchange"
EXCHANGE_FORM = {
    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
}


@dataclass(frozen=True, kw_only=True)
class MintedToken:
    """One minted JWT and what the broker said about it (the mint response)."""

    jwt: str
    expiration: int  # exp, unix seconds
    scope: str
    sub: str
    jti: str
    wallet: str
    principal_tags: dict[str, list[str]] = field(default_factory=dict)


class BrokerApi:
    """One broker's mint endpoint for one credential; thread-safe.

    A federation proof is exchanged for a session once, and again when the broker forgets it
    (sessions expire, a restarted broker keeps none).
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._http = httpx.Client(base_url=config.url, timeout=TIMEOUT, transport=transport)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._session: str | None = None

    def close(self) -> None:
        self._http.close()

    def mint(self, scope: str | None = None, ttl: int | None = None) -> MintedToken:
        body: dict[str, Any] = {}
        if scope is not None:
            body["scope"] = scope
        if ttl is not None:
            body["ttl_seconds"] = ttl
        if self.config.subject is not None:
            return self._exchange(self.config.subject.fetch(), body)
        bearer = self.config.bearer or self._federation_session(renew=False)
        try:
            answer = self._post(MINT_PATH, bearer=bearer, body=body)
        except BrokerRefused as refused:
            if not (self.config.federation and refused.broker_status == 401):
                raise
            bearer = self._federation_session(renew=True)
            answer = self._post(MINT_PATH, bearer=bearer, body=body)
        return self._minted(MINT_PATH, answer)

    def _exchange(self, job_token: str, body: dict[str, Any]) -> MintedToken:
        """RFC 8693: the CI job's token for a broker token (form-encoded, as the RFC says)."""
        form = EXCHANGE_FORM | {"subject_token": job_token} | {k: str(v) for k, v in body.items()}
        answer = self._post(EXCHANGE_PATH, body=form, form=True)
        return self._minted(EXCHANGE_PATH, answer)

    def _minted(self, path: str, answer: dict[str, Any]) -> MintedToken:
        # A mint answer names the scope ``wallet`` (upstream) and ``scope``; an exchange only ``scope``.
        try:
            jwt, expiration = str(answer["jwt"]), int(answer["expiration"])
            scope = str(answer["scope"] if "scope" in answer else answer["wallet"])
            return MintedToken(
                jwt=jwt,
                expiration=expiration,
                scope=scope,
                sub=str(answer.get("sub", "")),
                jti=str(answer.get("jti", "")),
                wallet=str(answer.get("wallet", scope)),
                principal_tags=answer.get("principal_tags", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise self._not_a_broker(path, f"no usable {exc}") from None

    def _federation_session(self, *, renew: bool) -> str:
        with self._lock:
            if self._session is None or renew:
                answer = self._post(SESSION_PATH, body={"auth_token": self.config.proof})
                if not isinstance(answer.get("session"), str):
                    raise self._not_a_broker(SESSION_PATH, "no 'session' string")
                self._session = answer["session"]
            return self._session

    def _post(
        self, path: str, *, body: dict[str, Any], bearer: str | None = None, form: bool = False
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        # No body at all when there is nothing to ask: the upstream wire format.
        payload = body if body or path != MINT_PATH else None
        last = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                backoff = FIRST_BACKOFF * 2 ** (attempt - 1)
                self._sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not secrets
            try:
                if form:
                    response = self._http.post(path, headers=headers, data=body)
                else:
                    response = self._http.post(path, headers=headers, json=payload)
            except httpx.TransportError as exc:
                last = f"cannot reach the broker at {self.config.url}: {exc or type(exc).__name__}"
                continue
            if response.status_code >= 500:
                code, message = _error_of(response)
                last = f"the broker at {self.config.url} answered {response.status_code} {code}: {message}"
                continue
            if response.status_code >= 400:
                raise _refused(response)
            try:
                answer = response.json()
            except ValueError:  # HTML from a proxy, or another service on that port
                answer = None
            if not isinstance(answer, dict):
                raise self._not_a_broker(path, f"not a JSON object: {_snippet(response.text)}")
            return answer
        raise BrokerUnavailable(f"{last} (gave up after {ATTEMPTS} attempts)")

    def _not_a_broker(self, path: str, what: str) -> BrokerUnavailable:
        return BrokerUnavailable(
            f"{self.config.url}{path} answered {what}; is {self.config.url} the broker?"
        )


def _body_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return body
    return {"error": f"http_{response.status_code}", "message": _snippet(response.text)}


def _error_of(response: httpx.Response) -> tuple[str, str]:
    body = _body_of(response)
    return str(body["error"]), str(body.get("message"))


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return (text[:200] + "…") if len(text) > 200 else text or "(empty body)"


def _refused(response: httpx.Response) -> BrokerRefused:
    body = _body_of(response)
    allowance = body.get("allowance")
    return BrokerRefused(
        response.status_code,
        str(body["error"]),
        str(body.get("message")),
        allowance if isinstance(allowance, str) else None,
    )
