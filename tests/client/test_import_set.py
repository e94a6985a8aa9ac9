"""``import broker.client`` loads none of the server stack and none of the broker's own internals."""

from __future__ import annotations

import json
import subprocess
import sys
from types import ModuleType

import broker.client

FORBIDDEN = (
    "starlette",
    "uvicorn",
    "broker.server",
    "broker.store",
    "broker.callers",
    "broker.config",
)


def test_importing_the_client_loads_no_server_config_store_or_callers() -> None:
    code = "import sys, json, broker.client; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "broker.client" in loaded
    assert [m for m in loaded if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN)] == []
    assert "boto3" not in loaded  # only aws_session and cleanup_scope pay for it


def test_the_public_names_are_exactly_all() -> None:
    # '@py_…' names: pytest rewrites asserts in every module of a distribution with a pytest11
    # entry point, ours included.
    public = {
        name
        for name, value in vars(broker.client).items()
        if not name.startswith(("_", "@")) and not isinstance(value, ModuleType)
    }
    assert public - {"annotations", "TYPE_CHECKING"} == set(broker.client.__all__)
