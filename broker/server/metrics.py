"""Prometheus metrics. Discovery/JWKS fetch counters matter: STS's failed fetches never reach
CloudTrail, so the issuer's own numbers are the only record of them."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    exposition,
    generate_latest,
)

CONTENT_TYPE = exposition.CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.mint_total = Counter(
            "broker_mint",
            "Mint attempts by caller kind and result (ok or an error code).",
            ["caller", "result"],
            registry=self.registry,
        )
        self.exchange_total = Counter(
            "broker_token_exchange",
            "Token exchanges by trusted issuer (or 'untrusted') and result (ok or an error code).",
            ["issuer", "result"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "broker_request_seconds",
            "Request latency by route.",
            ["route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.published_keys = Gauge(
            "broker_published_keys", "Keys in the JWKS.", registry=self.registry
        )
        self.wellknown_fetch_total = Counter(
            "broker_wellknown_fetch",
            "Discovery and JWKS fetches by document and status.",
            ["document", "status"],
            registry=self.registry,
        )
        self.wellknown_seconds = Histogram(
            "broker_wellknown_seconds",
            "Discovery and JWKS response time.",
            ["document"],
            registry=self.registry,
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1),
        )
        self.wellknown_last_fetch = Gauge(
            "broker_wellknown_last_fetch_timestamp_seconds",
            "Unix time of the last fetch of each document.",
            ["document"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
