"""`portico gateway`: uvicorn serving the app factory, over HTTP or HTTPS, in 1..N processes."""

from __future__ import annotations

import os
import tempfile

import uvicorn

from gateway.edge.admission import Admission
from gateway.edge.protocol import ConnectionLimits, bounded_protocol
from gateway.settings import get_settings


def run_gateway(*, host: str, port: int, workers: int = 1) -> int:
    """Serves until SIGINT/SIGTERM. Workers share nothing but Redis (limits, cache), so any
    number of them, on one machine or many, behave as one gateway."""
    settings = get_settings()  # a bad setting stops here, with its message
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # /metrics then sums every worker, whichever one answers the scrape.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="portico-metrics-")
    tls = {}
    if settings.tls_cert_file is not None:
        tls = {"ssl_certfile": str(settings.tls_cert_file),
               "ssl_keyfile": str(settings.tls_key_file)}
    limits = ConnectionLimits(head_timeout=settings.head_timeout_seconds,
                              max_target_bytes=settings.max_target_bytes,
                              max_header_bytes=settings.max_header_bytes,
                              send_timeout=settings.send_timeout_seconds)
    admission = Admission(settings.max_in_flight, hsts=settings.tls_cert_file is not None)
    uvicorn.run(
        "gateway.app:create_app", factory=True, host=host, port=port, workers=workers,
        log_config=None, access_log=False, server_header=False,
        # uvicorn's httptools protocol with a deadline and size limits on request heads, and
        # the load shedder.
        http=bounded_protocol(limits, admission),
        timeout_keep_alive=settings.keepalive_timeout_seconds,
        # X-Forwarded-For is read by the rate limiter, from trusted proxies only.
        proxy_headers=False, timeout_graceful_shutdown=10, **tls)
    return 0
