"""Secret and config specs: a name, labels and a bounded, non-empty payload."""

from __future__ import annotations

from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation.fields import check_labels, check_object_name
from shoal.v1 import specs_pb2, types_pb2

MAX_SECRET_BYTES = 500 * 1024
MAX_CONFIG_BYTES = 1000 * 1024


def check_secret_spec(spec: specs_pb2.SecretSpec, field: str = "spec") -> None:
    _check_payload(field, spec.annotations, spec.data, MAX_SECRET_BYTES)


def check_config_spec(spec: specs_pb2.ConfigSpec, field: str = "spec") -> None:
    _check_payload(field, spec.annotations, spec.data, MAX_CONFIG_BYTES)


def _check_payload(field: str, annotations: types_pb2.Annotations, data: bytes, limit: int) -> None:
    check_object_name(f"{field}.annotations.name", annotations.name)
    check_labels(f"{field}.annotations.labels", annotations.labels)
    if not data:
        raise InvalidArgument(f"{field}.data", "must not be empty")
    if len(data) > limit:
        raise InvalidArgument(f"{field}.data", f"is {len(data)} bytes, more than {limit}")
