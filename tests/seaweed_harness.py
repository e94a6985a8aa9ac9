"""A real S3 + STS on loopback: SeaweedFS ``weed mini`` trusting a broker served over https.

Used by the session fixture in tests/integration/conftest.py and by bench/verify_roundtrip.py.
Recipe and every flag's reason: deploy/seaweedfs.md.
``seaweed_stack()`` starts everything in a private temp dir and always tears it down: the weed
process (SIGTERM, then SIGKILL), its hard-coded ``/tmp/seaweedfs-*-grpc-<port>.sock`` files, the
broker thread and the temp dir, also when the body raises.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import trustme
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from mypy_boto3_s3 import S3Client

from broker.aws import policy
from broker.aws.verify import PROBE_OBJECT
from broker.config import Settings, load_settings
from broker.store.keys import KeyStore
from broker.testing.live import LiveBroker, free_socket, serving

WEED = Path(sys.executable).parent / "weed"
REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = "oidc-test-role"
BUCKET = "oidc-test-bucket"
# A second [[resources]] table with a scope tag of its own: verify proves both, reap sees two
# buckets, and every token carries both tags (both roles read their own).
SECOND_ROLE = "oidc-test-second-role"
SECOND_BUCKET = "oidc-test-second-bucket"
SECOND_TAG = "second_scope"
RESOURCES = [
    {"name": "main", "role": ROLE, "bucket": BUCKET},
    {"name": "second", "role": SECOND_ROLE, "bucket": SECOND_BUCKET, "scope_tag": SECOND_TAG},
]
FOREIGN_PREFIX = "0xdeadbeef/"
PROOF = "federation-proof"
# The two misconfigurations the upstream docs warn about, as extra roles beside the real one.
BROAD_ROLE = "oidc-test-broad-role"
UNTAGGED_TRUST_ROLE = "oidc-test-untagged-role"
_BROAD_GRANT = {
    "Version": policy.VERSION,
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{BUCKET}/*"]},
    ],
}
_PORTS = ("master", "volume", "filer", "s3", "admin")
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class SeaweedStack:
    broker: LiveBroker
    ca: trustme.CA
    ca_file: Path
    endpoint: str
    workdir: Path
    log_file: Path
    admin_keys: tuple[str, str]
    process: subprocess.Popen[bytes]

    @property
    def settings(self) -> Settings:
        return self.broker.settings

    def role_arn(self, name: str = ROLE) -> str:
        return f"arn:aws:iam::{ACCOUNT}:role/{name}"

    def admin_s3(self) -> S3Client:
        return _s3(self.endpoint, *self.admin_keys)

    def wallet(self, proof: str = PROOF) -> str:
        reply = self.broker.client.post("/session/create", json={"auth_token": proof})
        reply.raise_for_status()
        return str(reply.json()["wallet"])


def _s3(endpoint: str, access_key: str, secret_key: str) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"max_attempts": 1}),
    )


def broker_settings(issuer: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "oidc_issuer": issuer,
        "data_dir": data_dir,
        "key_reload_seconds": 0.05,
        "aws_account_id": ACCOUNT,
        "resources": RESOURCES,
        "seaweedfs_tags_claim": True,
    }
    return load_settings(environ={}, **(values | overrides))


def iam_config(settings: Settings, ca_file: Path) -> dict[str, Any]:
    """SeaweedFS's STS/IAM config, built from the rendered policies (never written by hand)."""
    main = settings.resource("main")
    trust = policy.render(settings, "trust", main, target="seaweedfs")
    untagged_trust = policy.render(settings, "trust", main, target="seaweedfs")
    for statement in untagged_trust["Statement"]:
        # The misconfiguration: a trust policy that does not require the scope tag.
        del statement["Condition"]["Null"]
    scoped = {
        r.name: {"name": f"Scoped-{r.name}", "document": policy.render(settings, "role", r)}
        for r in settings.resources
    }
    role = scoped["main"]
    broad: dict[str, Any] = {"name": "BroadGrant", "document": _BROAD_GRANT}

    def role_entry(name: str, trust_doc: dict[str, Any], attached: list[str]) -> dict[str, Any]:
        arn = f"arn:aws:iam::{ACCOUNT}:role/{name}"
        return {
            "roleName": name,
            "roleArn": arn,
            "attachedPolicies": attached,
            "trustPolicy": trust_doc,
        }

    return {
        "sts": {
            "tokenDuration": "1h",
            "maxSessionLength": "12h",
            "issuer": "seaweedfs-sts",
            "signingKey": base64.b64encode(secrets.token_bytes(32)).decode(),
        },
        "policy": {"defaultEffect": "Deny"},
        "providers": [
            {
                "name": policy.provider_arn(settings),
                "type": "oidc",
                "enabled": True,
                "config": {
                    "issuer": settings.oidc_issuer,
                    "clientId": settings.audience,
                    "allowedPrincipalTagKeys": [*settings.scope_tags, settings.caller_tag],
                    "tlsCaCert": str(ca_file),
                },
            }
        ],
        "policies": [*scoped.values(), broad],
        "roles": [
            *(
                role_entry(
                    r.role,
                    policy.render(settings, "trust", r, target="seaweedfs"),
                    [scoped[r.name]["name"]],
                )
                for r in settings.resources
            ),
            role_entry(BROAD_ROLE, trust, [role["name"], broad["name"]]),
            role_entry(UNTAGGED_TRUST_ROLE, untagged_trust, [role["name"]]),
        ],
    }


def _free_ports(count: int) -> list[int]:
    # All held open together so no two are equal; weed binds them right after they are closed.
    socks = [free_socket() for _ in range(count)]
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _weed_command(tmp: Path, ports: dict[str, int]) -> list[str]:
    flags = [f"-{name}={port}" for name, port in ports.items()]
    return [
        str(WEED),
        f"-logdir={tmp / 'logs'}",  # a global flag: must precede `mini`
        "mini",
        f"-dir={tmp / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",  # on by default, and it phones seaweedfs.com
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={tmp / 's3.sock'}",
        f"-filer.localSocket={tmp / 'filer.sock'}",
        "-master.volumeSizeLimitMB=64",
        f"-s3.config={tmp / 's3.json'}",
        f"-s3.iam.config={tmp / 'iam.json'}",
        *flags,
    ]


def _wait_ready(proc: subprocess.Popen[bytes], s3: S3Client, log_file: Path) -> None:
    """The S3 port opens before the store works: poll bucket creation until it succeeds."""
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}: {_tail(log_file)}")
        try:
            s3.create_bucket(Bucket=BUCKET)
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "BucketAlreadyOwnedByYou":
                return
            last: Exception = exc
        except EndpointConnectionError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"SeaweedFS not ready in {_START_TIMEOUT} s ({last}): {_tail(log_file)}"
            )
        time.sleep(0.1)  # poll interval of a readiness check with a deadline


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes], grpc_ports: list[int]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(_STOP_TIMEOUT)
    # A clean exit removes these; a kill or a stop during startup leaves them (no flag moves them).
    for name in _PORTS:
        for port in grpc_ports:
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)  # noqa: S108


@contextlib.contextmanager
def seaweed_stack(**settings_overrides: Any) -> Iterator[SeaweedStack]:
    """Broker (https, throwaway CA) + SeaweedFS trusting it, bucket created, two scopes seeded."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="oidc-test-sw-")))
        ca = trustme.CA()
        ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))

        def settings_for(url: str) -> Settings:
            settings = broker_settings(url, tmp / "broker", **settings_overrides)
            # Keys as a broker that has run a while leaves them: `keys rotate` may promote now.
            KeyStore.for_settings(settings).ensure(int(time.time()) - 3600)
            return settings

        broker = stack.enter_context(serving(settings_for, tls=ca))
        (tmp / "iam.json").write_text(json.dumps(iam_config(broker.settings, ca_file), indent=2))
        admin = (secrets.token_hex(10).upper(), secrets.token_urlsafe(30))
        identity = {
            "name": "admin",
            "credentials": [{"accessKey": admin[0], "secretKey": admin[1]}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        (tmp / "s3.json").write_text(json.dumps({"identities": [identity]}))
        numbers = _free_ports(2 * len(_PORTS))
        ports: dict[str, int] = {}
        for i, name in enumerate(_PORTS):
            ports[f"{name}.port"] = numbers[2 * i]
            ports[f"{name}.port.grpc"] = numbers[2 * i + 1]
        grpc_ports = numbers[1::2]
        log_file = tmp / "weed.log"
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                _weed_command(tmp, ports),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "SSL_CERT_FILE": str(ca_file)},
                start_new_session=True,
            )
        stack.callback(_stop, proc, grpc_ports)
        endpoint = f"http://127.0.0.1:{ports['s3.port']}"
        sw = SeaweedStack(
            broker=broker,
            ca=ca,
            ca_file=ca_file,
            endpoint=endpoint,
            workdir=tmp,
            log_file=log_file,
            admin_keys=admin,
            process=proc,
        )
        s3 = sw.admin_s3()
        _wait_ready(proc, s3, log_file)
        problems = [
            line for line in log_file.read_text().splitlines() if "Failed to create" in line
        ]
        if problems:
            raise RuntimeError("SeaweedFS skipped part of iam.json: " + "; ".join(problems))
        for bucket in [r.bucket for r in broker.settings.resources if r.bucket != BUCKET]:
            s3.create_bucket(Bucket=bucket)
        for bucket in [r.bucket for r in broker.settings.resources]:
            for scope in (sw.wallet(), FOREIGN_PREFIX.rstrip("/")):
                # verify reads PROBE_OBJECT in the foreign scope: it must exist (broker/aws/verify.py).
                s3.put_object(Bucket=bucket, Key=f"{scope}/{PROBE_OBJECT}", Body=scope.encode())
        yield sw
