"""Throughput and latency of the broker next to a bare Starlette app and the raw sign rate.

The server runs pinned to core 0, wrk (Debian package `wrk`) to core 1; each row is one wrk run
of --seconds at -c32. Ratios inside one run are what to compare (docs/performance.md).
Usage: .venv/bin/python bench/broker_bench.py [--seconds 10]   (writes bench/results/*.json)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

HERE = Path(__file__).resolve().parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], env: dict[str, str], url: str) -> tuple[subprocess.Popen[bytes], float]:
    """Spawn pinned to core 0; return the process and its cold start to the first 200."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *argv],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = began + 30
    while time.perf_counter() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, time.perf_counter() - began
        except httpx.HTTPError:
            time.sleep(0.005)  # polling a spawn, not synchronising tests
    proc.kill()
    raise RuntimeError(f"{argv} did not answer {url}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wrk(
    url: str, seconds: int, script: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, float]:
    argv = ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", url]
    if script:
        argv[5:5] = ["-s", str(script)]
    out = subprocess.run(
        argv, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([0-9.]+)(us|ms|s)", out, re.MULTILINE)
        if m is None:
            raise RuntimeError(f"no {p}th percentile in wrk output:\n{out}")
        scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
        return float(m.group(1)) * scale

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rate,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def raw_sign_rate(alg: str, seconds: float = 2.0) -> float:
    os.sched_setaffinity(0, {1})
    msg = b"x" * 400
    if alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())

        def sign() -> None:
            key.sign(msg, ec.ECDSA(hashes.SHA256()))
    else:
        rkey = rsa.generate_private_key(public_exponent=65537, key_size=2048)

        def sign() -> None:
            rkey.sign(msg, padding.PKCS1v15(), hashes.SHA256())

    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(100):
            sign()
        n += 100
    return n / seconds


def run(seconds: int) -> dict[str, object]:
    rows: list[dict[str, object]] = []
    port = free_port()
    bare_url = f"http://127.0.0.1:{port}/"
    proc, cold = start(
        [
            PY,
            "-m",
            "uvicorn",
            "--app-dir",
            str(HERE),
            "bare_app:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        {},
        bare_url,
    )
    try:
        bare = wrk(bare_url, seconds)
        rows.append(
            {
                "what": "bare starlette (fixed bytes)",
                **bare,
                "cold_s": cold,
                "rss_mb": rss_mb(proc.pid),
            }
        )
    finally:
        proc.kill()
        proc.wait()
    for alg in ("ES256", "RS256"):
        with tempfile.TemporaryDirectory() as data:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = {
                "BROKER_OIDC_ISSUER": url,
                "BROKER_DATA_DIR": data,
                "BROKER_RATE_LIMITS": "off",
                "BROKER_KEY_ALGORITHM": alg,
                "BROKER_LOG_LEVEL": "warning",
            }
            proc, cold = start([PY, "-m", "broker", "serve"], env, f"{url}/healthz")
            try:
                bearer = httpx.post(f"{url}/session/create", json={"auth_token": "b"}).json()
                mint = wrk(
                    f"{url}/v1/mint-oidc-jwt",
                    seconds,
                    HERE / "mint.lua",
                    {"BENCH_BEARER": bearer["session"]},
                )
                rows.append(
                    {
                        "what": f"broker mint {alg} (durable audit)",
                        **mint,
                        "cold_s": cold,
                        "rss_mb": rss_mb(proc.pid),
                    }
                )
                if alg == "ES256":
                    for name, path in (
                        ("jwks", "/.well-known/jwks.json"),
                        ("discovery", "/.well-known/openid-configuration"),
                    ):
                        r = wrk(url + path, seconds)
                        rows.append(
                            {
                                "what": f"broker {name}",
                                **r,
                                "cold_s": cold,
                                "rss_mb": rss_mb(proc.pid),
                            }
                        )
            finally:
                proc.terminate()
                proc.wait(30)
        rows.append(
            {
                "what": f"raw {alg} sign, one core",
                "rps": raw_sign_rate(alg),
                "p50_ms": None,
                "p99_ms": None,
                "errors": 0.0,
                "cold_s": None,
                "rss_mb": None,
            }
        )
    by = {str(r["what"]): float(r["rps"]) for r in rows}  # type: ignore[arg-type]
    bare_rps = by["bare starlette (fixed bytes)"]
    ratios = {
        "jwks / bare": by["broker jwks"] / bare_rps,
        "discovery / bare": by["broker discovery"] / bare_rps,
        "mint ES256 / bare": by["broker mint ES256 (durable audit)"] / bare_rps,
        "mint RS256 / raw RS256 sign": by["broker mint RS256 (durable audit)"]
        / by["raw RS256 sign, one core"],
    }
    return {"rows": rows, "ratios": ratios, "seconds": seconds}


def show(result: dict[str, object]) -> None:
    def fmt(v: object, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    print(
        f"{'what':36} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'non2xx':>7} {'cold s':>7} {'RSS MB':>7}"
    )
    for r in result["rows"]:  # type: ignore[attr-defined]
        print(
            f"{r['what']:36} {fmt(r['rps'], '9.0f')} {fmt(r['p50_ms'], '7.2f')} "
            f"{fmt(r['p99_ms'], '7.2f')} {fmt(r['errors'], '7.0f')} {fmt(r['cold_s'], '7.2f')} "
            f"{fmt(r['rss_mb'], '7.1f')}"
        )
    print()
    for name, ratio in result["ratios"].items():  # type: ignore[attr-defined]
        print(f"{name:36} {ratio:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    result = run(args.seconds)
    show(result)
    out = HERE / "results" / f"broker-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
