"""Caller rules: which workload identities (from the peer certificate) may call which method.

Each service keeps one table, next to its servicer: method name -> the identities allowed, or
ANY_WORKLOAD. ANY_WORKLOAD is allowed only on public methods, those with a google.api.http
annotation (what the REST edge exposes): an internal job with a certificate of the CA but an
identity no table names gets exactly those. Health and reflection answer any certificate holder.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from google.api import annotations_pb2
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection

ANY_WORKLOAD = "*"
OPEN_SERVICES = frozenset({
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
    "grpc.reflection.v1.ServerReflection",
})

Table = Mapping[str, Collection[str] | str]


def public_methods(service: ServiceDescriptor) -> frozenset[str]:
    """The methods of `service` with a google.api.http annotation."""
    return frozenset(method.name for method in service.methods
                     if method.GetOptions().HasExtension(annotations_pb2.http))


class CallerRules:
    """The tables of the services one server hosts, checked when made: every method named,
    ANY_WORKLOAD only on public methods."""

    def __init__(self, tables: Mapping[ServiceDescriptor, Table]) -> None:
        self._rules: dict[str, frozenset[str] | str] = {}
        self._open_everything = False
        for service, table in tables.items():
            self._add(service, table)

    @classmethod
    def allow_all(cls) -> CallerRules:
        """Every method to every certificate holder: for test doubles of the services only."""
        rules = cls({})
        rules._open_everything = True
        return rules

    def allows(self, method: str, workload: str) -> bool:
        """Whether `workload` may call `method` ("/package.Service/Method")."""
        if self._open_everything or method.split("/")[1] in OPEN_SERVICES:
            return True
        allowed = self._rules.get(method)
        if allowed is None:
            return False
        return allowed == ANY_WORKLOAD or workload in allowed

    def _add(self, service: ServiceDescriptor, table: Table) -> None:
        names = {method.name for method in service.methods}
        if set(table) != names:
            raise ValueError(f"the caller table of {service.full_name} must name exactly its "
                             f"methods; missing {sorted(names - set(table))}, "
                             f"unknown {sorted(set(table) - names)}")
        public = public_methods(service)
        for name, allowed in table.items():
            if allowed == ANY_WORKLOAD and name not in public:
                raise ValueError(f"{service.full_name}/{name} is internal: name its callers")
            self._rules[f"/{service.full_name}/{name}"] = (
                ANY_WORKLOAD if allowed == ANY_WORKLOAD else frozenset(allowed))
