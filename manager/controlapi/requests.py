"""Checks of the request fields around the specs: ids, versions, presence of the spec."""

from __future__ import annotations

from google.protobuf.message import Message

from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation.fields import check_text

MAX_ID_CHARS = 64


def required_id(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "must be set")
    check_text(field, value, MAX_ID_CHARS)
    return value


def required_version(field: str, value: int) -> int:
    if not value:
        raise InvalidArgument(
            field, "must be set to the meta.version of the object the change was computed from"
        )
    return value


def required_spec(request: Message) -> None:
    if not request.HasField("spec"):
        raise InvalidArgument("spec", "must be set")
