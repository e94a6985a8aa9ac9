"""`test-broker token` end to end on SeaweedFS: plain boto3 with nothing but the printed AWS env.

Processes as a CI job runs them: the command, then a fresh Python with only the AWS_* variables
(no credentials, no config file, no region): boto3's own web-identity provider does the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import jwt
import pytest
from botocore.exceptions import ClientError

from broker.aws.verify import PROBE_OBJECT
from tests.seaweed_harness import BUCKET, FOREIGN_PREFIX, SeaweedStack

pytestmark = pytest.mark.integration

TTL = 10  # MIN_TOKEN_TTL: SeaweedFS allows no leeway on exp, so a stale token file fails at once

# Own scope: put, get, list allowed; foreign: get, put denied. One JSON line of outcomes.
PROOF = """
import json, os, sys, boto3
from botocore.exceptions import ClientError
bucket, own, foreign = sys.argv[1:4]
s3 = boto3.client("s3")
def outcome(call):
    try:
        call()
        return "allowed"
    except ClientError as exc:
        return exc.response["Error"]["Code"]
print(json.dumps({
    "put own": outcome(lambda: s3.put_object(Bucket=bucket, Key=own + "/e2e.txt", Body=b"x")),
    "get own": outcome(lambda: s3.get_object(Bucket=bucket, Key=own + "/e2e.txt")),
    "list own": outcome(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=own + "/")),
    "get foreign": outcome(lambda: s3.get_object(Bucket=bucket, Key=foreign)),
    "put foreign": outcome(lambda: s3.put_object(Bucket=bucket, Key=foreign + ".x", Body=b"x")),
}))
"""


def _command_env(seaweed: SeaweedStack) -> dict[str, str]:
    """What the job's shell has: the broker's CA (a private https issuer), no AWS config."""
    return {"PATH": os.environ["PATH"], "SSL_CERT_FILE": str(seaweed.ca_file)}


def _sdk_env(seaweed: SeaweedStack, tmp_path: Path) -> dict[str, str]:
    # HOME points at an empty directory: no ~/.aws of whoever runs the tests.
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL_STS": seaweed.endpoint,
        "AWS_ENDPOINT_URL_S3": seaweed.endpoint,
    }


def _token(seaweed: SeaweedStack, *args: str, **run: object) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "broker", "token", "--broker", seaweed.broker.url]
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*argv, "--federation-proof", "--role-arn", seaweed.role_arn(), *args],
        capture_output=True,
        text=True,
        check=False,
        **run,
    )


def test_boto3_with_only_the_printed_env_reaches_its_scope_and_not_a_foreign_one(
    seaweed: SeaweedStack, tmp_path: Path
) -> None:
    printed = _token(
        seaweed,
        "--print-env",
        "--json",
        "--out",
        str(tmp_path / "t.jwt"),
        env=_command_env(seaweed),
    )
    assert printed.returncode == 0, printed.stderr
    body = json.loads(printed.stdout)
    assert sorted(body["env"]) == [
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ]
    env = {**_sdk_env(seaweed, tmp_path), **body["env"]}
    foreign = f"{FOREIGN_PREFIX}{PROBE_OBJECT}"
    proof = subprocess.run(
        [sys.executable, "-c", PROOF, BUCKET, body["scope"], foreign],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proof.returncode == 0, proof.stderr
    assert json.loads(proof.stdout) == {
        "put own": "allowed",
        "get own": "allowed",
        "list own": "allowed",
        "get foreign": "AccessDenied",
        "put foreign": "AccessDenied",
    }


# Runs under `test-broker token --ttl 10 -- …`: a fresh boto3 session (which reads the token file
# again) for each call, until three token lifetimes have passed; stops at the first failure.
LONG_JOB = """
import json, os, sys, time, boto3, jwt
bucket, own, ttl = sys.argv[1], sys.argv[2], int(sys.argv[3])
path = os.environ["AWS_WEB_IDENTITY_TOKEN_FILE"]
first = open(path).read()
# The first token's exp plus two more lifetimes: three tokens' worth, and a little beyond.
until = jwt.decode(first, options={"verify_signature": False})["exp"] + 2 * ttl + 2
seen, calls, last = set(), 0, 0.0
while time.time() < until:
    seen.add(jwt.decode(open(path).read(), options={"verify_signature": False})["jti"])
    s3 = boto3.session.Session().client("s3")
    s3.put_object(Bucket=bucket, Key=f"{own}/long-{calls}.txt", Body=b"x")
    s3.get_object(Bucket=bucket, Key=f"{own}/long-{calls}.txt")
    calls, last = calls + 1, time.time()
    time.sleep(0.5)
print(json.dumps({"first": first, "tokens": len(seen), "calls": calls, "last": last}))
"""


def test_a_command_outlives_three_token_lifetimes_with_plain_boto3(
    seaweed: SeaweedStack, tmp_path: Path
) -> None:
    wallet = seaweed.wallet()
    job = [sys.executable, "-c", LONG_JOB, BUCKET, wallet, str(TTL)]
    env = {**_command_env(seaweed), **_sdk_env(seaweed, tmp_path)}
    done = _token(seaweed, "--ttl", str(TTL), "--", *job, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    first_exp = jwt.decode(report["first"], options={"verify_signature": False})["exp"]
    # Every call succeeded (the job stops at its first error), the last one well past the point
    # where the first token, and the two after it, had expired.
    assert report["last"] > first_exp + 2 * TTL
    assert report["calls"] >= 6
    assert report["tokens"] >= 4  # the first, then a new one every two thirds of a lifetime
    # The control: the token the job started with is refused now, so the file had to be fresh.
    sts = boto3.client("sts", endpoint_url=seaweed.endpoint, region_name="us-east-1")
    with pytest.raises(ClientError) as refused:
        sts.assume_role_with_web_identity(
            RoleArn=seaweed.role_arn(), RoleSessionName="stale", WebIdentityToken=report["first"]
        )
    assert refused.value.response["Error"]["Code"] == "ExpiredTokenException"
