"""The floor: a bare FastAPI app with one GET endpoint answering a small JSON made by orjson,
served by uvicorn exactly as `portico gateway` serves the gateway (gateway/run.py: one worker,
uvicorn's default loop and HTTP parser, i.e. uvloop and httptools, no access log, no server
header). What it costs is the Python HTTP stack's own cost per request.

Run as `python -m scripts.bench.floor_app --port PORT`.
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from fastapi import FastAPI, Response

ITEM = {"id": "P0000", "name": "Product 0", "description": "", "price": "10.00", "stock": 1000,
        "attributes": {}, "create_time": "2026-01-01T00:00:00Z",
        "update_time": "2026-01-01T00:00:00Z"}


def create_app() -> FastAPI:
    # Telemetry off, as in the gateway: the floor must not carry a cost the gateway does not.
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False})

    @app.get("/products/{id}")
    async def product(id: str) -> Response:
        return Response(orjson.dumps({**ITEM, "id": id}), media_type="application/json")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the benchmark's floor app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run("scripts.bench.floor_app:create_app", factory=True, host=args.host,
                port=args.port, workers=1, log_config=None, access_log=False,
                server_header=False, proxy_headers=False, timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
