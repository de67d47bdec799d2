"""The REST route table and the protos' google.api.http annotations cannot disagree."""

from __future__ import annotations

from google.api import annotations_pb2, http_pb2

from gateway.app import all_routes
from portico.order.v1 import order_pb2
from portico.product.v1 import product_pb2
from portico.user.v1 import user_pb2

FILES = (user_pb2.DESCRIPTOR, product_pb2.DESCRIPTOR, order_pb2.DESCRIPTOR)


def annotated() -> dict[str, tuple[str, str, str]]:
    """full method name -> (verb, path, response_body) from the protos."""
    found = {}
    for file in FILES:
        for service in file.services_by_name.values():
            for method in service.methods:
                options = method.GetOptions()
                if not options.HasExtension(annotations_pb2.http):
                    continue
                rule: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern")
                found[f"{service.full_name}/{method.name}"] = (
                    verb.upper(), getattr(rule, verb), rule.response_body)
    return found


def test_every_route_is_an_annotated_rpc_with_the_same_verb_and_path() -> None:
    protos = annotated()
    for route in all_routes():
        assert route.grpc_method in protos, f"{route.grpc_method} has no google.api.http"
        verb, path, response_body = protos[route.grpc_method]
        assert (route.verb, route.path) == (verb, path), route.grpc_method
        assert (route.response_field or route.list_field or "") == response_body, \
            route.grpc_method


def test_every_annotated_rpc_is_served() -> None:
    served = {route.grpc_method for route in all_routes()}
    assert set(annotated()) == served


def test_internal_rpcs_have_no_rest_mapping() -> None:
    assert not {m for m in annotated() if m.endswith(("ReserveStock", "ReleaseStock",
                                                        "CommitStock"))}
