"""JSON <-> protobuf, in one place, with the ProtoJSON mapping of google.protobuf.json_format
(proto field names kept, every field without presence printed).

json_format walks each message generically (ListFields, a descriptor lookup and a type switch
per field): on a miss that is about a tenth of the gateway's CPU. So each message type is
compiled once into a list of plain steps that give the same dict, and json_format is used as
is for any type with a field kind the compiler does not know (64-bit integers, floats, bytes,
maps, enums, other well-known types). tests/unit/test_transcode.py holds the two equal on every
message of the protos. (Keys come in field order; json_format puts unset fields last.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any, TypeVar

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

M = TypeVar("M", bound=Message)
Printer = Callable[[Message], dict[str, Any]]
Step = Callable[[Message, dict[str, Any]], None]

_F = FieldDescriptor
_AS_IS = frozenset({_F.TYPE_STRING, _F.TYPE_BOOL, _F.TYPE_INT32, _F.TYPE_SINT32,
                    _F.TYPE_SFIXED32, _F.TYPE_UINT32, _F.TYPE_FIXED32})
_TIMESTAMP = "google.protobuf.Timestamp"
_STRUCT = "google.protobuf.Struct"


class TranscodeError(ValueError):
    """A JSON value that does not fit the request message (caught as a 400 by errors.py)."""


def to_message(cls: type[M], data: dict[str, Any]) -> M:
    """Builds a request message from validated JSON-shaped data."""
    plain = _plain_fields(cls.DESCRIPTOR)
    if all(type(value) is plain.get(name) for name, value in data.items()):
        # Strings, booleans and int32s given as exactly those types (the edge's path and query
        # values): the constructor takes them as ParseDict would, and checks the int32 range.
        try:
            return cls(**data)
        except ValueError:
            pass  # out of range: let ParseDict word the error
    try:
        return json_format.ParseDict(data, cls(), ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise TranscodeError(str(error)) from error


def to_dict(message: Message) -> dict[str, Any]:
    """The JSON shape of a message: proto field names (snake_case), every field present."""
    return printer(message.DESCRIPTOR)(message)


def to_json(value: Message | list[Message] | dict[str, Any]) -> bytes:
    """Serialises a message, a list of messages (a JSON array) or a dict with orjson."""
    if isinstance(value, Message):
        return orjson.dumps(to_dict(value))
    if isinstance(value, list):
        return orjson.dumps([to_dict(item) for item in value])
    return orjson.dumps(value)


@cache
def printer(descriptor: Descriptor) -> Printer:
    """The printer of one message type: compiled steps, or json_format's when a field is of
    a kind the compiler leaves to it."""
    compiled = compile_printer(descriptor)
    if compiled is not None:
        return compiled
    return lambda message: json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def compile_printer(descriptor: Descriptor) -> Printer | None:
    """Steps that print each field of `descriptor` as json_format would, or None."""
    steps: list[Step] = []
    for field in descriptor.fields:
        step = _step(field)
        if step is None:
            return None
        steps.append(step)

    def print_message(message: Message) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for step in steps:
            step(message, out)
        return out

    return print_message


def _step(field: FieldDescriptor) -> Step | None:
    name = field.name
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return None
    value = _value(field)
    if value is None:
        return None
    if field.is_repeated:
        if value is _same:
            return lambda message, out: out.__setitem__(name, list(getattr(message, name)))
        return lambda message, out: out.__setitem__(
            name, [value(item) for item in getattr(message, name)])
    if field.has_presence:  # message fields and `optional` scalars: printed only when set
        def present(message: Message, out: dict[str, Any]) -> None:
            if message.HasField(name):
                out[name] = value(getattr(message, name))
        return present
    if value is _same:
        return lambda message, out: out.__setitem__(name, getattr(message, name))
    return lambda message, out: out.__setitem__(name, value(getattr(message, name)))


def _same(value: Any) -> Any:
    return value


def _value(field: FieldDescriptor) -> Callable[[Any], Any] | None:
    """How one value of `field` is printed, or None for a kind left to json_format."""
    kind = field.message_type
    if kind is None:
        return _same if field.type in _AS_IS else None
    if kind.full_name == _TIMESTAMP:
        return lambda timestamp: _rfc3339(timestamp.seconds, timestamp.nanos)
    if kind.full_name == _STRUCT:
        return _struct
    if kind.full_name.startswith("google.protobuf."):
        return None
    return printer(kind)


@lru_cache(maxsize=4096)
def _rfc3339(seconds: int, nanos: int) -> str:
    # A record's timestamps are printed again on every read of it: remembered (bounded).
    return Timestamp(seconds=seconds, nanos=nanos).ToJsonString()


def _struct(struct: Message) -> dict[str, Any]:
    """A Struct as json_format prints it (the ProtoJSON rules of Value), without its generic
    walk: a catalogue's attributes are printed on every read."""
    return {key: _json_value(value) for key, value in struct.fields.items()}


def _json_value(value: Message) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value" or kind == "bool_value":
        return getattr(value, kind)
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):  # as json_format: no JSON form (the services refuse it)
            raise ValueError(f"{number} has no JSON form as a Value.number_value")
        return number
    if kind == "struct_value":
        return _struct(value.struct_value)
    if kind == "list_value":
        return [_json_value(item) for item in value.list_value.values]
    return None  # null_value, or no kind set


_PLAIN = {_F.TYPE_STRING: str, _F.TYPE_BOOL: bool, _F.TYPE_INT32: int}


@cache
def _plain_fields(descriptor: Descriptor) -> dict[str, type]:
    """The fields of a request that may be set through the constructor, with the one Python
    type each takes there."""
    return {field.name: _PLAIN[field.type] for field in descriptor.fields
            if field.message_type is None and not field.is_repeated and field.type in _PLAIN}
