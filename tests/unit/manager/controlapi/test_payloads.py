"""Secrets and configs through a real Control server."""

from __future__ import annotations

import grpc

from shoal.v1 import control_pb2, objects_pb2, specs_pb2
from tests.unit.manager.controlapi.helpers import Control, refused, service_spec

INVALID = grpc.StatusCode.INVALID_ARGUMENT
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def secret_spec(name: str = "db-password", data: bytes = b"hunter2") -> specs_pb2.SecretSpec:
    spec = specs_pb2.SecretSpec(data=data)
    spec.annotations.name = name
    return spec


def config_spec(
    name: str = "nginx.conf", data: bytes = b"worker_processes 1;"
) -> specs_pb2.ConfigSpec:
    spec = specs_pb2.ConfigSpec(data=data)
    spec.annotations.name = name
    return spec


async def test_secret_data_is_stored_but_never_returned(control: Control) -> None:
    created = (
        await control.stub.CreateSecret(control_pb2.CreateSecretRequest(spec=secret_spec()))
    ).secret
    assert not created.spec.data
    assert control.get(objects_pb2.Secret, created.id).spec.data == b"hunter2"
    got = (await control.stub.GetSecret(control_pb2.GetSecretRequest(secret_id=created.id))).secret
    listed = (await control.stub.ListSecrets(control_pb2.ListSecretsRequest())).secrets
    assert got == created and list(listed) == [created]


async def test_internal_secrets_are_hidden_and_kept(control: Control) -> None:
    internal = objects_pb2.Secret(id="internal1", internal=True, spec=secret_spec("shoal-x"))
    await control.put(internal)
    listed = (await control.stub.ListSecrets(control_pb2.ListSecretsRequest())).secrets
    assert not listed
    await refused(
        control.stub.RemoveSecret(control_pb2.RemoveSecretRequest(secret_id="internal1")),
        FAILED_PRECONDITION,
        "internal",
    )


async def test_secret_limits(control: Control) -> None:
    await refused(
        control.stub.CreateSecret(
            control_pb2.CreateSecretRequest(spec=secret_spec(data=b"x" * (500 * 1024 + 1)))
        ),
        INVALID,
        "spec.data: is 512001 bytes, more than 512000",
    )
    await refused(
        control.stub.CreateSecret(control_pb2.CreateSecretRequest(spec=secret_spec(data=b""))),
        INVALID,
        "spec.data: must not be empty",
    )
    await control.stub.CreateSecret(
        control_pb2.CreateSecretRequest(spec=secret_spec(data=b"x" * 500 * 1024))
    )
    await refused(
        control.stub.CreateSecret(control_pb2.CreateSecretRequest(spec=secret_spec(data=b"y"))),
        grpc.StatusCode.ALREADY_EXISTS,
        "'db-password'",
    )


async def test_secret_update_changes_labels_only(control: Control) -> None:
    created = (
        await control.stub.CreateSecret(control_pb2.CreateSecretRequest(spec=secret_spec()))
    ).secret
    spec = specs_pb2.SecretSpec()
    spec.CopyFrom(created.spec)  # as a client has it: without data
    spec.annotations.labels["rotated"] = "no"

    updated = (
        await control.stub.UpdateSecret(
            control_pb2.UpdateSecretRequest(
                secret_id=created.id, secret_version=created.meta.version, spec=spec
            )
        )
    ).secret
    assert updated.spec.annotations.labels == {"rotated": "no"}
    assert control.get(objects_pb2.Secret, created.id).spec.data == b"hunter2"

    spec.data = b"new password"
    await refused(
        control.stub.UpdateSecret(
            control_pb2.UpdateSecretRequest(
                secret_id=created.id, secret_version=updated.meta.version, spec=spec
            )
        ),
        INVALID,
        "spec.data: cannot change",
    )
    assert control.get(objects_pb2.Secret, created.id).spec.data == b"hunter2"


async def test_config_round_trip_includes_data(control: Control) -> None:
    created = (
        await control.stub.CreateConfig(control_pb2.CreateConfigRequest(spec=config_spec()))
    ).config
    assert created.spec.data == b"worker_processes 1;"
    got = (await control.stub.GetConfig(control_pb2.GetConfigRequest(config_id=created.id))).config
    assert got == created
    await refused(
        control.stub.CreateConfig(
            control_pb2.CreateConfigRequest(spec=config_spec("big", b"x" * (1000 * 1024 + 1)))
        ),
        INVALID,
        "spec.data: is 1024001 bytes, more than 1024000",
    )
    spec = specs_pb2.ConfigSpec()
    spec.CopyFrom(created.spec)
    spec.data = b"worker_processes 2;"
    await refused(
        control.stub.UpdateConfig(
            control_pb2.UpdateConfigRequest(
                config_id=created.id, config_version=created.meta.version, spec=spec
            )
        ),
        INVALID,
        "spec.data: cannot change",
    )


async def test_removal_refused_while_referenced(control: Control) -> None:
    secret = (
        await control.stub.CreateSecret(control_pb2.CreateSecretRequest(spec=secret_spec()))
    ).secret
    config = (
        await control.stub.CreateConfig(control_pb2.CreateConfigRequest(spec=config_spec()))
    ).config
    spec = service_spec("web")
    spec.task.container.secrets.add(
        secret_id=secret.id, secret_name="db-password", file=specs_pb2.FileTarget(name="pw")
    )
    spec.task.container.configs.add(
        config_id=config.id, file=specs_pb2.FileTarget(name="/etc/nginx/nginx.conf")
    )
    service = (
        await control.stub.CreateService(control_pb2.CreateServiceRequest(spec=spec))
    ).service

    await refused(
        control.stub.RemoveSecret(control_pb2.RemoveSecretRequest(secret_id=secret.id)),
        FAILED_PRECONDITION,
        f"in use by service(s) 'web' ({service.id})",
    )
    await refused(
        control.stub.RemoveConfig(control_pb2.RemoveConfigRequest(config_id=config.id)),
        FAILED_PRECONDITION,
        "'web'",
    )
    await control.stub.RemoveService(control_pb2.RemoveServiceRequest(service_id=service.id))
    await control.stub.RemoveSecret(control_pb2.RemoveSecretRequest(secret_id=secret.id))
    await control.stub.RemoveConfig(control_pb2.RemoveConfigRequest(config_id=config.id))
    assert control.get(objects_pb2.Secret, secret.id) is None
    assert control.get(objects_pb2.Config, config.id) is None
