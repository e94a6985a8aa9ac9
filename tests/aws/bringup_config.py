"""The config the bring-up tests use: a public-looking issuer and two test resources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.aws.moto_harness import MOTO_ACCOUNT

ISSUER = "https://oidc-test.example.com"
THUMBPRINT = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"
ROLES = {"mail": "agentkeys-mail-oidc-test", "vault": "agentkeys-vault-oidc-test"}
BUCKETS = {"mail": "agentkeys-mail-oidc-test", "vault": "agentkeys-vault-oidc-test"}


def write_config(tmp_path: Path, **overrides: Any) -> Path:
    """A config for the two resources above; ``overrides`` replace top-level keys.

    ``resources`` are (name, role, bucket[, scope_tag]) tuples.
    """
    keys: dict[str, Any] = {
        "oidc_issuer": ISSUER,
        "aws_account_id": MOTO_ACCOUNT,
        "oidc_thumbprints": [THUMBPRINT],
        "data_dir": str(tmp_path / "data"),
    } | overrides
    resources = keys.pop("resources", [(n, ROLES[n], BUCKETS[n]) for n in ROLES])
    lines = [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    for name, role, bucket, *scope_tag in resources:
        lines += ["[[resources]]", f"name = {name!r}", f"role = {role!r}", f"bucket = {bucket!r}"]
        lines += [f"scope_tag = {tag!r}" for tag in scope_tag]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
