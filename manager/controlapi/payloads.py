"""Secrets and configs: create, get, list, update (labels only), remove (refused while a
service refers to them). Secret data never leaves the managers through Control; config
data does."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from manager.controlapi.backend import Backend
from manager.controlapi.errors import FailedPrecondition, ObjectNotFound
from manager.controlapi.filters import CommonFilters, matches
from manager.controlapi.immutable import check_only_labels_change
from manager.controlapi.requests import required_id, required_spec, required_version
from manager.controlapi.validation import check_config_spec, check_secret_spec
from manager.store import ReadTx, VersionConflict, WriteTx, new_id
from shoal.v1 import control_pb2, objects_pb2, specs_pb2

P = TypeVar("P", objects_pb2.Secret, objects_pb2.Config)


def _secret_ids(spec: specs_pb2.ServiceSpec) -> Iterable[str]:
    return (reference.secret_id for reference in spec.task.container.secrets)


def _config_ids(spec: specs_pb2.ServiceSpec) -> Iterable[str]:
    return (reference.config_id for reference in spec.task.container.configs)


@dataclass(frozen=True)
class PayloadKind(Generic[P]):
    name: str
    cls: type[P]
    check_spec: Callable[[Any, str], None]
    referenced: Callable[[specs_pb2.ServiceSpec], Iterable[str]]
    # Secrets: data is write-only.
    hide_data: bool

    def shown(self, obj: P) -> P:
        if self.hide_data:
            obj.spec.ClearField("data")
        return obj


SECRETS = PayloadKind("secret", objects_pb2.Secret, check_secret_spec, _secret_ids, True)
CONFIGS = PayloadKind("config", objects_pb2.Config, check_config_spec, _config_ids, False)


def _get(tx: ReadTx, kind: PayloadKind[P], object_id: str) -> P:
    obj = tx.get(kind.cls, object_id)
    if obj is None:
        raise ObjectNotFound(f"{kind.name} {object_id!r} not found")
    return obj


def _is_internal(obj: objects_pb2.Secret | objects_pb2.Config) -> bool:
    return isinstance(obj, objects_pb2.Secret) and obj.internal


async def create_payload(backend: Backend, kind: PayloadKind[P], spec: Any) -> P:
    kind.check_spec(spec, "spec")
    obj = kind.cls(id=new_id())
    obj.spec.CopyFrom(spec)
    return kind.shown(await backend.write_object(lambda tx: tx.create(obj)))


async def get_payload(backend: Backend, kind: PayloadKind[P], object_id: str) -> P:
    object_id = required_id(f"{kind.name}_id", object_id)
    return kind.shown(backend.read(lambda tx: _get(tx, kind, object_id)))


async def list_payloads(backend: Backend, kind: PayloadKind[P], filters: CommonFilters) -> list[P]:
    """Internal secrets (made by Shoal itself) are not listed."""
    found = backend.read(lambda tx: tx.list(kind.cls))
    return [
        kind.shown(o)
        for o in found
        if not _is_internal(o)
        and matches(filters, o.id, (o.spec.annotations.name,), o.spec.annotations.labels)
    ]


async def update_payload(
    backend: Backend, kind: PayloadKind[P], object_id: str, version: int, spec: Any
) -> P:
    """Only labels may change. A secret's update may leave data empty (clients never see
    it); any data it does carry must be the stored data."""
    object_id = required_id(f"{kind.name}_id", object_id)
    version = required_version(f"{kind.name}_version", version)

    def update(tx: WriteTx) -> P:
        obj = _get(tx, kind, object_id)
        if obj.meta.version != version:
            raise VersionConflict(kind.name, object_id, obj.meta.version, version)
        requested = type(obj.spec)()
        requested.CopyFrom(spec)
        if kind.hide_data and not requested.data:
            requested.data = obj.spec.data
        check_only_labels_change("spec", obj.spec, requested)
        kind.check_spec(requested, "spec")
        obj.spec.CopyFrom(requested)
        return tx.update(obj)

    return kind.shown(await backend.write_object(update))


async def remove_payload(backend: Backend, kind: PayloadKind[P], object_id: str) -> None:
    object_id = required_id(f"{kind.name}_id", object_id)

    def remove(tx: WriteTx) -> None:
        obj = _get(tx, kind, object_id)
        if _is_internal(obj):
            raise FailedPrecondition(f"{kind.name} {object_id!r} is internal to Shoal")
        services: list[objects_pb2.Service] = tx.list(objects_pb2.Service)
        users = [
            f"{service.spec.annotations.name!r} ({service.id})"
            for service in services
            if any(
                object_id in kind.referenced(spec) for spec in (service.spec, service.previous_spec)
            )
        ]
        if users:
            raise FailedPrecondition(
                f"{kind.name} {object_id!r} is in use by service(s) {', '.join(users)}"
            )
        tx.delete(kind.cls, object_id)

    await backend.write(remove)


async def create_secret(
    backend: Backend, request: control_pb2.CreateSecretRequest
) -> control_pb2.CreateSecretResponse:
    required_spec(request)
    secret = await create_payload(backend, SECRETS, request.spec)
    return control_pb2.CreateSecretResponse(secret=secret)


async def get_secret(
    backend: Backend, request: control_pb2.GetSecretRequest
) -> control_pb2.GetSecretResponse:
    return control_pb2.GetSecretResponse(
        secret=await get_payload(backend, SECRETS, request.secret_id)
    )


async def list_secrets(
    backend: Backend, request: control_pb2.ListSecretsRequest
) -> control_pb2.ListSecretsResponse:
    return control_pb2.ListSecretsResponse(
        secrets=await list_payloads(backend, SECRETS, request.filters)
    )


async def update_secret(
    backend: Backend, request: control_pb2.UpdateSecretRequest
) -> control_pb2.UpdateSecretResponse:
    required_spec(request)
    secret = await update_payload(
        backend, SECRETS, request.secret_id, request.secret_version, request.spec
    )
    return control_pb2.UpdateSecretResponse(secret=secret)


async def remove_secret(
    backend: Backend, request: control_pb2.RemoveSecretRequest
) -> control_pb2.RemoveSecretResponse:
    await remove_payload(backend, SECRETS, request.secret_id)
    return control_pb2.RemoveSecretResponse()


async def create_config(
    backend: Backend, request: control_pb2.CreateConfigRequest
) -> control_pb2.CreateConfigResponse:
    required_spec(request)
    config = await create_payload(backend, CONFIGS, request.spec)
    return control_pb2.CreateConfigResponse(config=config)


async def get_config(
    backend: Backend, request: control_pb2.GetConfigRequest
) -> control_pb2.GetConfigResponse:
    return control_pb2.GetConfigResponse(
        config=await get_payload(backend, CONFIGS, request.config_id)
    )


async def list_configs(
    backend: Backend, request: control_pb2.ListConfigsRequest
) -> control_pb2.ListConfigsResponse:
    return control_pb2.ListConfigsResponse(
        configs=await list_payloads(backend, CONFIGS, request.filters)
    )


async def update_config(
    backend: Backend, request: control_pb2.UpdateConfigRequest
) -> control_pb2.UpdateConfigResponse:
    required_spec(request)
    config = await update_payload(
        backend, CONFIGS, request.config_id, request.config_version, request.spec
    )
    return control_pb2.UpdateConfigResponse(config=config)


async def remove_config(
    backend: Backend, request: control_pb2.RemoveConfigRequest
) -> control_pb2.RemoveConfigResponse:
    await remove_payload(backend, CONFIGS, request.config_id)
    return control_pb2.RemoveConfigResponse()
