"""The SeaweedFS harness leaves nothing behind, also when the code using it fails."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.seaweed_harness import seaweed_stack

pytestmark = pytest.mark.integration


class _Boom(Exception):
    pass


def _grpc_sockets() -> set[Path]:
    return set(Path("/tmp").glob("seaweedfs-*-grpc-*.sock"))  # noqa: S108 - weed's fixed path


def test_failed_body_still_stops_weed_and_removes_its_files() -> None:
    before = _grpc_sockets()
    with pytest.raises(_Boom), seaweed_stack() as stack:  # noqa: PT012 - the body must fail
        workdir, process, broker_url = stack.workdir, stack.process, stack.broker.url
        assert _grpc_sockets() - before, "weed should have created its gRPC sockets"
        raise _Boom
    assert process.poll() is not None
    assert not workdir.exists()
    assert not _grpc_sockets() - before
    port = int(broker_url.rsplit(":", 1)[1])
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "broker still listening"
