"""Probes and scrapes (/healthz, /readyz, /metrics) log their access line at DEBUG, every other
request at INFO: at the default level a person reads the requests people made."""

from __future__ import annotations

import contextlib
import logging

from tests.integration.gateway.conftest import gateway_client, settings_for


@contextlib.contextmanager
def recorded(name: str):
    """The records of logger `name`, DEBUG and up, while the block runs."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_probe_and_scrape_lines_are_debug_the_others_info(signing_key, redis_url) -> None:
    settings = settings_for("127.0.0.1:1", signing_key, redis_url, access_log=True,
                            rate_limit_enabled=False, cache_enabled=False)
    async with gateway_client(settings) as http:
        with recorded("portico.access") as records:
            for path in ("/healthz", "/readyz", "/metrics", "/healthz/", "/products/P1",
                         "/nowhere"):
                await http.get(path)
    assert [(record.route, record.levelname) for record in records] == [
        ("/healthz", "DEBUG"), ("/readyz", "DEBUG"), ("/metrics", "DEBUG"),
        ("/healthz", "DEBUG"), ("/products/{id}", "INFO"), ("other", "INFO"),
    ]
