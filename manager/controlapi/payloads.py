"""Secrets and configs: create, get, list, update (labels only), remove (refused while a
service refers to them). Secret data never leaves the managers through Control; config
data does.

Both kinds share one implementation, parameterised by `PayloadKind`; each Control method
gets its handler from it (`creating(SECRETS, CreateSecretResponse)`...), since the gRPC API
has a method and a response type per kind. A request names its object in `<kind>_id` and
`<kind>_version`; a response holds it in `<kind>` (`<kind>s` for a list).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from manager.controlapi.backend import Backend
from manager.controlapi.errors import FailedPrecondition, ObjectNotFound
from manager.controlapi.filters import CommonFilters, matches
from manager.controlapi.immutable import check_only_labels_change
from manager.controlapi.requests import required_id, required_spec, required_version
from manager.controlapi.validation import check_config_spec, check_secret_spec
from manager.store import ReadTx, VersionConflict, WriteTx, new_id
from shoal.v1 import control_pb2, objects_pb2, specs_pb2

P = TypeVar("P", objects_pb2.Secret, objects_pb2.Config)
Resp = TypeVar("Resp", bound=Message)
# A Control handler of this module: the request is one of the kind's (see the docstring).
Handler = Callable[[Backend, Any], Awaitable[Resp]]


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

    def object_id(self, request: Any) -> str:
        return required_id(f"{self.name}_id", getattr(request, f"{self.name}_id"))


SECRETS = PayloadKind("secret", objects_pb2.Secret, check_secret_spec, _secret_ids, True)
CONFIGS = PayloadKind("config", objects_pb2.Config, check_config_spec, _config_ids, False)


def _get(tx: ReadTx, kind: PayloadKind[P], object_id: str) -> P:
    obj = tx.get(kind.cls, object_id)
    if obj is None:
        raise ObjectNotFound(f"{kind.name} {object_id!r} not found")
    return obj


def _is_internal(obj: objects_pb2.Secret | objects_pb2.Config) -> bool:
    return isinstance(obj, objects_pb2.Secret) and obj.internal


def creating(kind: PayloadKind[P], answer: Callable[..., Resp]) -> Handler[Resp]:
    async def create(backend: Backend, request: Any) -> Resp:
        required_spec(request)
        kind.check_spec(request.spec, "spec")
        obj = kind.cls(id=new_id())
        obj.spec.CopyFrom(request.spec)
        created = await backend.write_object(lambda tx: tx.create(obj))
        return answer(**{kind.name: kind.shown(created)})

    return create


def getting(kind: PayloadKind[P], answer: Callable[..., Resp]) -> Handler[Resp]:
    async def get(backend: Backend, request: Any) -> Resp:
        object_id = kind.object_id(request)
        found = backend.read(lambda tx: _get(tx, kind, object_id))
        return answer(**{kind.name: kind.shown(found)})

    return get


def listing(kind: PayloadKind[P], answer: Callable[..., Resp]) -> Handler[Resp]:
    """Internal secrets (made by Shoal itself) are not listed."""

    async def list_(backend: Backend, request: Any) -> Resp:
        filters: CommonFilters = request.filters
        found = backend.read(lambda tx: tx.list(kind.cls))
        shown = [
            kind.shown(o)
            for o in found
            if not _is_internal(o)
            and matches(filters, o.id, (o.spec.annotations.name,), o.spec.annotations.labels)
        ]
        return answer(**{f"{kind.name}s": shown})

    return list_


def updating(kind: PayloadKind[P], answer: Callable[..., Resp]) -> Handler[Resp]:
    """Only labels may change. A secret's update may leave data empty (clients never see
    it); any data it does carry must be the stored data."""

    async def update(backend: Backend, request: Any) -> Resp:
        required_spec(request)
        object_id = kind.object_id(request)
        version = required_version(f"{kind.name}_version", getattr(request, f"{kind.name}_version"))

        def change(tx: WriteTx) -> P:
            obj = _get(tx, kind, object_id)
            if obj.meta.version != version:
                raise VersionConflict(kind.name, object_id, obj.meta.version, version)
            requested = type(obj.spec)()
            requested.CopyFrom(request.spec)
            if kind.hide_data and not requested.data:
                requested.data = obj.spec.data
            check_only_labels_change("spec", obj.spec, requested)
            kind.check_spec(requested, "spec")
            obj.spec.CopyFrom(requested)
            return tx.update(obj)

        updated = await backend.write_object(change)
        return answer(**{kind.name: kind.shown(updated)})

    return update


def removing(kind: PayloadKind[P], answer: Callable[..., Resp]) -> Handler[Resp]:
    async def remove(backend: Backend, request: Any) -> Resp:
        object_id = kind.object_id(request)

        def delete(tx: WriteTx) -> None:
            obj = _get(tx, kind, object_id)
            if _is_internal(obj):
                raise FailedPrecondition(f"{kind.name} {object_id!r} is internal to Shoal")
            services: list[objects_pb2.Service] = tx.list(objects_pb2.Service)
            users = [
                f"{service.spec.annotations.name!r} ({service.id})"
                for service in services
                if any(
                    object_id in kind.referenced(spec)
                    for spec in (service.spec, service.previous_spec)
                )
            ]
            if users:
                raise FailedPrecondition(
                    f"{kind.name} {object_id!r} is in use by service(s) {', '.join(users)}"
                )
            tx.delete(kind.cls, object_id)

        await backend.write(delete)
        return answer()

    return remove


# The Control methods (one per kind and operation, as the gRPC API has them).
create_secret = creating(SECRETS, control_pb2.CreateSecretResponse)
get_secret = getting(SECRETS, control_pb2.GetSecretResponse)
list_secrets = listing(SECRETS, control_pb2.ListSecretsResponse)
update_secret = updating(SECRETS, control_pb2.UpdateSecretResponse)
remove_secret = removing(SECRETS, control_pb2.RemoveSecretResponse)

create_config = creating(CONFIGS, control_pb2.CreateConfigResponse)
get_config = getting(CONFIGS, control_pb2.GetConfigResponse)
list_configs = listing(CONFIGS, control_pb2.ListConfigsResponse)
update_config = updating(CONFIGS, control_pb2.UpdateConfigResponse)
remove_config = removing(CONFIGS, control_pb2.RemoveConfigResponse)
