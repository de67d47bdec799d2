"""The stores' clients traced by OpenTelemetry's own instrumentations: a span per SQL statement
(SQLAlchemy), per MongoDB command (pymongo) and per Redis command or pipeline (redis-py),
under the span of the step that made it.

Our code that touches a database stays in the store modules: the instrumentations import
sqlalchemy, pymongo and redis themselves. pymongo's and redis-py's are switched on for the
whole process by `instrument_clients`, at start-up and before any client is made (pymongo
gives a client the listeners registered when it is made); SQLAlchemy's per engine, by
`instrument_engine`, which services/common/db.py calls for each engine it makes.
"""

from __future__ import annotations

from typing import Any

from services.common.tracing import state


def instrument_clients() -> None:
    """pymongo's command listener and redis-py's wrappers, for every client made from now on
    (redis-py's: for every client). Does nothing while traces are off."""
    if not state.active():
        return
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    PymongoInstrumentor().instrument()
    RedisInstrumentor().instrument()


def instrument_engine(engine: Any) -> None:
    """A span per statement run on this SQLAlchemy AsyncEngine (its sync engine's cursor
    events). Does nothing while traces are off."""
    if not state.active():
        return
    from opentelemetry import metrics, trace
    from opentelemetry.instrumentation.sqlalchemy import __version__
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    # EngineTracer is what SQLAlchemyInstrumentor().instrument(engine=...) makes; made here
    # directly because that instrumentor instruments once per process, and a service makes
    # several engines (the first admin's, the service's own).
    name = "opentelemetry.instrumentation.sqlalchemy"
    EngineTracer(trace.get_tracer(name, __version__),
                 engine.sync_engine,
                 metrics.get_meter(name, __version__).create_up_down_counter(
                     "db.client.connections.usage", unit="connections"),
                 False, {}, False)
