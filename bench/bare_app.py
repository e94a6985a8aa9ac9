"""The reference: a bare Starlette app returning fixed bytes of the JWKS's size."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

BODY = b"x" * int(os.environ.get("BARE_BYTES", "900"))


async def fixed(request: object) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/", fixed)])
