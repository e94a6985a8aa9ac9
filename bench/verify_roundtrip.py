"""Time verify's round trip (mint → STS → 5 S3 calls) against a local SeaweedFS.

Run from the repository root: ``.venv/bin/python -m bench.verify_roundtrip [--rounds N]``.
Prints a table and writes JSON to bench/results/ (gitignored). Goal: median < 50 ms. Then it
times the whole SeaweedFS integration suite (``pytest -m integration``) as people run it;
``--no-suite`` skips that.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from broker.aws.proof import Target
from broker.aws.verify import Verifier, asserted_probe, federation_token
from broker.cli.common import table
from tests.seaweed_harness import BUCKET, seaweed_stack

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GOAL_MEDIAN_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def integration_suite() -> dict[str, float | int]:
    """Wall time of the integration suite run as a person would, in a fresh interpreter."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "integration"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    passed = re.search(r"(\d+) passed", summary)
    if done.returncode != 0 or passed is None:
        raise SystemExit(f"the integration suite failed ({summary or done.stderr.strip()})")
    return {"tests": int(passed.group(1)), "wall_seconds": round(wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-suite", action="store_true", help="Skip timing the suite.")
    args = parser.parse_args()
    started = time.perf_counter()
    with seaweed_stack(rate_limits=False) as stack:
        up_s = time.perf_counter() - started
        ctx = ssl.create_default_context(cafile=str(stack.ca_file))
        with httpx.Client(base_url=stack.broker.url, verify=ctx, timeout=10) as client:
            target = Target(
                role_arn=stack.role_arn(),
                bucket=BUCKET,
                scope_tag=stack.settings.scope_tag_of(stack.settings.resource("main")),
                sts_endpoint=stack.endpoint,
                s3_endpoint=stack.endpoint,
            )
            # The harness seeded the foreign probe itself.
            probe = asserted_probe("the harness, which seeded it")
            verifier = Verifier(target, federation_token(client, "federation-proof"), probe)
            for _ in range(args.warmup):
                verifier.run()
            reports = [verifier.run() for _ in range(args.rounds)]
    if not all(r.isolated for r in reports):
        raise SystemExit("a round was not isolated; run the integration tests for details")
    series = {"round trip": [r.total_ms for r in reports]}
    for i, step in enumerate(reports[0].steps):
        series[step.name] = [r.steps[i].ms for r in reports]
    rows = [
        (name, f"{statistics.median(v):.2f}", f"{percentile(v, 0.99):.2f}", f"{max(v):.2f}")
        for name, v in series.items()
    ]
    print(table(("STEP", "MEDIAN MS", "P99 MS", "MAX MS"), rows))
    median = statistics.median(series["round trip"])
    verdict = "meets" if median < GOAL_MEDIAN_MS else "MISSES"
    goal = f"{verdict} the {GOAL_MEDIAN_MS:.0f} ms median goal"
    print(f"\n{args.rounds} rounds; stack up in {up_s:.2f} s; {goal}")
    suite = None if args.no_suite else integration_suite()
    if suite is not None:
        print(f"integration suite: {suite['tests']} tests in {suite['wall_seconds']:.1f} s wall")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"verify_roundtrip-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "rounds": args.rounds,
                "goal_median_ms": GOAL_MEDIAN_MS,
                "machine": platform.platform(),
                "stack_up_seconds": round(up_s, 3),
                "integration_suite": suite,
                "steps": {
                    n: {"median_ms": statistics.median(v), "p99_ms": percentile(v, 0.99)}
                    for n, v in series.items()
                },
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
