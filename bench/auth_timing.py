"""Does a 401 tell whether a credential id exists? Medians of both 401 paths, side by side.

Run from the repository root: ``.venv/bin/python -m bench.auth_timing [--rounds N]``.
Starts ``test-broker serve`` (credential minting on, rate limits off) on a free loopback port,
adds one CI credential, then alternates two kinds of bad bearer — an unknown id, and the real id
with a wrong secret — and times each request, in process (``credentials.authenticate``) and over
HTTP. Prints a table and writes JSON to bench/results/ (gitignored). Goal: the medians of the
two paths differ by less than the run-to-run noise (a few µs in process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

from broker.callers import credentials
from broker.cli.common import table
from broker.errors import Unauthorized
from broker.store import open_store
from broker.testing.live import free_loopback_url, spawn_broker

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def bad_bearers(secret: str) -> dict[str, str]:
    prefix, kind, cred_id, random_part = secret.split("_", 3)
    wrong = random_part[:-4] + ("AAAA" if not random_part.endswith("AAAA") else "BBBB")
    return {
        "unknown id": f"{prefix}_{kind}_{'0' * 12}_{random_part}",
        "wrong secret": f"{prefix}_{kind}_{cred_id}_{wrong}",
    }


def alternate(rounds: int, bearers: dict[str, str], once: Callable[[str], None]) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in bearers}
    for i in range(rounds):
        # Alternate which path goes first, so neither profits from a warmer cache.
        order = list(bearers.items()) if i % 2 else list(reversed(bearers.items()))
        for name, bearer in order:
            started = time.perf_counter_ns()
            once(bearer)
            samples[name].append((time.perf_counter_ns() - started) / 1000)
    return {
        name: {
            "median_us": round(statistics.median(values), 2),
            "p25_us": round(statistics.quantiles(values, n=4)[0], 2),
            "p75_us": round(statistics.quantiles(values, n=4)[2], 2),
        }
        for name, values in samples.items()
    }


def in_process(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, closing(open_store(Path(tmp))) as store:
        _, secret = credentials.add(
            store,
            kind="ci",
            name="bench",
            max_ttl=900,
            now=int(time.time()),
        )

        def once(bearer: str) -> None:
            try:
                credentials.authenticate(store, bearer, int(time.time()))
            except Unauthorized:
                return
            raise RuntimeError("a bad bearer authenticated")

        alternate(rounds // 10, bad_bearers(secret), once)  # warm up
        return alternate(rounds, bad_bearers(secret), once)


def over_http(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = free_loopback_url()
        env = {
            "BROKER_OIDC_ISSUER": url,
            "BROKER_DATA_DIR": str(Path(tmp) / "data"),
            "BROKER_CREDENTIAL_MINTING": "true",
            "BROKER_RATE_LIMITS": "off",
            "BROKER_LOG_LEVEL": "warning",
        }
        proc = spawn_broker(env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            argv = ["credentials", "add", "--kind", "ci", "--name", "bench", "--json"]
            added = subprocess.run(
                [sys.executable, "-m", "broker", *argv],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                check=True,
            )
            secret = json.loads(added.stdout)["secret"]
            with httpx.Client(base_url=url, timeout=10) as client:

                def once(bearer: str) -> None:
                    resp = client.post(
                        "/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {bearer}"}
                    )
                    if resp.status_code != 401:
                        raise RuntimeError(f"expected 401, got {resp.status_code}")

                alternate(rounds // 10, bad_bearers(secret), once)
                return alternate(rounds, bad_bearers(secret), once)
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()
    results = {"in process": in_process(args.rounds * 10), "HTTP": over_http(args.rounds)}
    rows = []
    for where, paths in results.items():
        unknown, wrong = paths["unknown id"], paths["wrong secret"]
        diff = round(wrong["median_us"] - unknown["median_us"], 2)
        for name, stats in paths.items():
            rows.append((where, name, stats["median_us"], stats["p25_us"], stats["p75_us"]))
        rows.append((where, "difference of medians", diff, "", ""))
    print(table(("WHERE", "401 PATH", "MEDIAN µs", "P25 µs", "P75 µs"), rows))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"auth-timing-{time.strftime('%Y%m%dT%H%M%S')}.json"
    machine = {"python": platform.python_version(), "machine": platform.machine()}
    out.write_text(json.dumps({"rounds": args.rounds, "machine": machine, **results}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
