"""The caller rules: each service's table names every method, internal methods name their
callers, and an unknown workload gets the public RPCs only."""

from __future__ import annotations

import pytest

from portico.product.v1 import product_pb2
from services.common.callers import ANY_WORKLOAD, CallerRules, public_methods
from services.order import access as order_access
from services.product import access as product_access
from services.user import access as user_access

TABLES = {user_access.SERVICE: user_access.CALLERS,
          product_access.SERVICE: product_access.CALLERS,
          order_access.SERVICE: order_access.CALLERS}
RULES = CallerRules(TABLES)
PRODUCT = "/portico.product.v1.ProductService"


@pytest.mark.parametrize("method", ["ReserveStock", "ReleaseStock", "CommitStock"])
def test_only_the_order_service_moves_stock(method: str) -> None:
    assert RULES.allows(f"{PRODUCT}/{method}", "order")
    for other in ("gateway", "user", "restock-job", "unknown"):
        assert not RULES.allows(f"{PRODUCT}/{method}", other)


def test_an_unknown_workload_gets_exactly_the_public_rpcs() -> None:
    for service in TABLES:
        for method in service.methods:
            allowed = RULES.allows(f"/{service.full_name}/{method.name}", "restock-job")
            assert allowed == (method.name in public_methods(service)), method.full_name


def test_health_and_reflection_answer_any_certificate_holder() -> None:
    assert RULES.allows("/grpc.health.v1.Health/Check", "anyone")
    assert RULES.allows("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "x")


def test_a_method_no_table_names_is_refused() -> None:
    assert not RULES.allows("/portico.product.v1.ProductService/Unheard", "order")
    assert not RULES.allows("/some.Other/Method", "gateway")


def test_a_table_must_name_every_method() -> None:
    incomplete = dict(product_access.CALLERS)
    del incomplete["CommitStock"]
    with pytest.raises(ValueError, match="CommitStock"):
        CallerRules({product_access.SERVICE: incomplete})


def test_an_internal_method_cannot_be_open_to_any_workload() -> None:
    service = product_pb2.DESCRIPTOR.services_by_name["ProductService"]
    with pytest.raises(ValueError, match="ReleaseStock is internal"):
        CallerRules({service: {**product_access.CALLERS, "ReleaseStock": ANY_WORKLOAD}})
