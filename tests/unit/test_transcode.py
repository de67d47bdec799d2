"""The compiled printer and the constructor path of gateway/transcode.py give exactly what
google.protobuf.json_format gives, on random messages of every type in the protos."""

from __future__ import annotations

import math
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import transcode
from gateway.app import all_routes
from portico.order.v1 import order_pb2
from portico.product.v1 import product_pb2
from portico.user.v1 import user_pb2

F = FieldDescriptor
MESSAGES = [module.DESCRIPTOR.message_types_by_name[name]
            for module in (user_pb2, product_pb2, order_pb2)
            for name in module.DESCRIPTOR.message_types_by_name]
INT32 = st.integers(-(2**31), 2**31 - 1)
TEXT = st.text(max_size=12)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | TEXT | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8)


def reference(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, depth: int = 0) -> Message:
    """A message of `descriptor` with a random subset of its fields set to random values."""
    message = _class(descriptor)()
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.is_repeated:
            for _ in range(draw(st.integers(0, 2 if depth < 2 else 0))):
                _add(draw, message, field, depth)
        elif field.message_type is not None:
            getattr(message, field.name).CopyFrom(_message_value(draw, field, depth))
        else:
            setattr(message, field.name, draw(_scalar(field)))
    return message


def _class(descriptor: Descriptor) -> type[Message]:
    for module in (user_pb2, product_pb2, order_pb2):
        found = getattr(module, descriptor.name, None)
        if found is not None and found.DESCRIPTOR is descriptor:
            return found
    raise LookupError(descriptor.full_name)


def _add(draw: st.DrawFn, message: Message, field: FieldDescriptor, depth: int) -> None:
    values = getattr(message, field.name)
    if field.message_type is not None:
        values.add().CopyFrom(_message_value(draw, field, depth))
    else:
        values.append(draw(_scalar(field)))


def _message_value(draw: st.DrawFn, field: FieldDescriptor, depth: int) -> Message:
    name = field.message_type.full_name
    if name == "google.protobuf.Timestamp":
        from google.protobuf.timestamp_pb2 import Timestamp
        return Timestamp(seconds=draw(st.integers(0, 253402300799)),
                         nanos=draw(st.sampled_from([0, 5_000_000, 123_456_000, 7, 999_999_999])))
    if name == "google.protobuf.Struct":
        struct = struct_pb2.Struct()
        struct.update(draw(st.dictionaries(TEXT, JSON_VALUE, max_size=3)))
        return struct
    return draw(messages(field.message_type, depth + 1))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy:
    return {F.TYPE_STRING: TEXT, F.TYPE_BOOL: st.booleans(), F.TYPE_INT32: INT32}[field.type]


@pytest.mark.parametrize("descriptor", MESSAGES, ids=lambda d: d.full_name)
def test_every_message_type_compiles(descriptor: Descriptor) -> None:
    """No message of the protos falls back to json_format: a field kind added later that the
    compiler does not know shows up here, not as a silent slowdown."""
    assert transcode.compile_printer(descriptor) is not None


@pytest.mark.parametrize("descriptor", MESSAGES, ids=lambda d: d.full_name)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_printer_matches_json_format(descriptor: Descriptor, data: st.DataObject) -> None:
    message = data.draw(messages(descriptor))
    assert transcode.to_dict(message) == reference(message)


def test_printer_falls_back_for_kinds_it_does_not_know() -> None:
    """A Value (a well-known type other than Timestamp and Struct) is printed by json_format."""
    value = struct_pb2.Value(number_value=2.0)
    assert transcode.compile_printer(value.DESCRIPTOR) is None
    assert transcode.to_dict(struct_pb2.Struct(fields={"n": value})) == {"n": 2}


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_a_struct_number_without_a_json_form_is_refused_as_json_format_refuses_it(
        number: float) -> None:
    product = product_pb2.Product(id="P1")
    product.attributes.update({"ok": 1, "nested": [{"n": number}]})
    with pytest.raises(ValueError):
        json_format.MessageToDict(product.attributes)
    with pytest.raises(ValueError):
        transcode.to_dict(product)


REQUESTS = [route.request for route in all_routes()]
FIELD_VALUE = st.none() | st.booleans() | TEXT | st.integers(-(2**40), 2**40) | st.floats()


@pytest.mark.parametrize("cls", REQUESTS, ids=lambda c: c.DESCRIPTOR.full_name)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_request_building_matches_parse_dict(cls: type[Message], data: st.DataObject) -> None:
    """Same message, or the same refusal, as ParseDict, whatever the value types."""
    names = [field.name for field in cls.DESCRIPTOR.fields]
    fields = data.draw(st.dictionaries(st.sampled_from(names), FIELD_VALUE, max_size=3)) \
        if names else {}  # LogoutRequest has no field
    try:
        expected = json_format.ParseDict(fields, cls(), ignore_unknown_fields=False)
    except json_format.ParseError:
        with pytest.raises(transcode.TranscodeError):
            transcode.to_message(cls, fields)
        return
    assert transcode.to_message(cls, fields) == expected
