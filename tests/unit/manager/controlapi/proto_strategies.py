"""Hypothesis strategies for arbitrary protobuf messages, read from their descriptors:
every field kind, open enums sent as any number, hostile strings (empty, huge, unicode,
NUL, near-misses of valid values), extreme integers, NaN and infinities."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

MAX_DEPTH = 7

# Values that are almost valid somewhere in the API, and classic troublemakers.
NEAR_MISSES = [
    "",
    "web",
    "UPPER",
    "busybox:1",
    "registry:5000/busybox:1",
    "node.role==manager",
    "node.role>>x",
    "node.labels.zone",
    "overlay",
    "/data",
    "relative/path",
    "..",
    "/",
    "10.0.0.0/24",
    "10.0.0.1",
    "::1",
    "SIGTERM",
    "CMD",
    "A=1",
    "=x",
    "a\x00b",
    "line\nbreak",
    "wéb",
    "🔥",
    "\u202e",
    "x" * 63,
    "x" * 64,
    "-leading",
]
HUGE_SIZES = [255, 256, 4097, 70_000, 300_000]


def rarely(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`rare` about one time in twenty (huge values are costly to send)."""
    return st.integers(0, 19).flatmap(lambda n: rare if n == 19 else usual)


def hostile_text() -> st.SearchStrategy[str]:
    usual = st.one_of(
        st.sampled_from(NEAR_MISSES),
        st.text(max_size=12),
        st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    )
    huge = st.builds(lambda c, n: c * n, st.sampled_from("a-/.é\x00"), st.sampled_from(HUGE_SIZES))
    return rarely(usual, huge)


def hostile_bytes() -> st.SearchStrategy[bytes]:
    return rarely(
        st.binary(max_size=32),
        st.sampled_from([b"", b"x" * (500 * 1024 + 1), b"y" * (1000 * 1024 + 1)]),
    )


_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_SINT32: (-(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_INT64: (-(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_SINT64: (-(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_UINT32: (0, (1 << 32) - 1),
    FieldDescriptor.TYPE_FIXED32: (0, (1 << 32) - 1),
    FieldDescriptor.TYPE_UINT64: (0, (1 << 64) - 1),
    FieldDescriptor.TYPE_FIXED64: (0, (1 << 64) - 1),
}


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted(
        {v for v in (low, high, 0, 1, -1, 5, 80, 65535, 65536, 1 << 63) if low <= v <= high}
    )
    return st.one_of(
        st.sampled_from(edges),
        st.integers(low, high),
        st.integers(-3, 100).filter(lambda v: low <= v <= high),
    )


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return hostile_text()
    if field.type == FieldDescriptor.TYPE_BYTES:
        return hostile_bytes()
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if field.type == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-2, 1000))
    return _integers(*_INT_RANGES[field.type])


@st.composite
def messages(draw: st.DrawFn, descriptor: Descriptor, density: int = 2, depth: int = 0) -> Message:
    """A message of type `descriptor`; each field is set with probability 1/`density`,
    less deeper down."""
    message = GetMessageClass(descriptor)()
    chosen_oneofs: set[str] = set()
    for field in descriptor.fields:
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE
        if is_message and depth >= MAX_DEPTH:
            continue
        oneof = field.containing_oneof
        if oneof is not None and oneof.name in chosen_oneofs:
            continue
        # Shrinks towards 0: towards fewer fields set.
        if draw(st.integers(0, density - 1 + depth)) != 1:
            continue
        if oneof is not None:
            chosen_oneofs.add(oneof.name)
        _fill(draw, message, field, density, depth)
    return message


def _fill(
    draw: st.DrawFn, message: Message, field: FieldDescriptor, density: int, depth: int
) -> None:
    name = field.name
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        if field.is_repeated:
            getattr(message, name).extend(draw(st.lists(scalar(field), max_size=3)))
        else:
            setattr(message, name, draw(scalar(field)))
        return
    descriptor = field.message_type
    assert descriptor is not None
    if descriptor.GetOptions().map_entry:
        key_field = descriptor.fields_by_name["key"]
        value_field = descriptor.fields_by_name["value"]
        size = draw(rarely(st.integers(0, 3), st.sampled_from([257, 2000])))
        keys = draw(st.lists(scalar(key_field), min_size=min(size, 3), max_size=min(size, 3)))
        keys += [f"k{i}" for i in range(size - len(keys))]
        target = getattr(message, name)
        for key in keys:
            # Map values in this API are scalars.
            target[key] = draw(scalar(value_field))
        return
    if field.is_repeated:
        container = getattr(message, name)
        for item in draw(st.lists(messages(descriptor, density, depth + 1), max_size=3)):
            container.add().CopyFrom(item)
        return
    getattr(message, name).CopyFrom(draw(messages(descriptor, density, depth + 1)))
    getattr(message, name).SetInParent()
