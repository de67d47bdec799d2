"""JSON <-> protobuf, in one place (google.protobuf.json_format, proto field names kept)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


class TranscodeError(ValueError):
    """A JSON value that does not fit the request message (caught as a 400 by errors.py)."""


def to_message(cls: type[M], data: dict[str, Any]) -> M:
    """Builds a request message from validated JSON-shaped data."""
    try:
        return json_format.ParseDict(data, cls(), ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise TranscodeError(str(error)) from error


def to_dict(message: Message) -> dict[str, Any]:
    """The JSON shape of a message: proto field names (snake_case), every field present."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def to_json(value: Message | list[Message] | dict[str, Any]) -> bytes:
    """Serialises a message, a list of messages (a JSON array) or a dict with orjson."""
    if isinstance(value, Message):
        return orjson.dumps(to_dict(value))
    if isinstance(value, list):
        return orjson.dumps([to_dict(item) for item in value])
    return orjson.dumps(value)
