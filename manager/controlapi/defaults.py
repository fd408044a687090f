"""The defaults managers apply to unset parts of a service spec (GetService with
insert_defaults): what the orchestrators will do, made visible."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from shoal.v1 import specs_pb2, types_pb2

STOP_GRACE_PERIOD = Duration(seconds=10)
RESTART_DELAY = Duration(seconds=5)
UPDATE_MONITOR = Duration(seconds=5)
UPDATE_PARALLELISM = 1


def default_update_config() -> types_pb2.UpdateConfig:
    return types_pb2.UpdateConfig(
        parallelism=UPDATE_PARALLELISM,
        delay=Duration(),
        failure_action=types_pb2.UpdateConfig.PAUSE,
        monitor=UPDATE_MONITOR,
        max_failure_ratio=0.0,
        order=types_pb2.UpdateConfig.STOP_FIRST,
    )


def with_defaults(spec: specs_pb2.ServiceSpec) -> specs_pb2.ServiceSpec:
    """A copy of `spec` with every unset part the managers give a default filled in."""
    full = specs_pb2.ServiceSpec()
    full.CopyFrom(spec)
    for name in ("update", "rollback"):
        if not full.HasField(name):
            getattr(full, name).CopyFrom(default_update_config())
        else:
            config = getattr(full, name)
            if not config.HasField("monitor"):
                config.monitor.CopyFrom(UPDATE_MONITOR)
            if not config.HasField("delay"):
                config.delay.CopyFrom(Duration())
    restart = full.task.restart
    if not restart.HasField("delay"):
        restart.delay.CopyFrom(RESTART_DELAY)
    if not restart.HasField("window"):
        restart.window.CopyFrom(Duration())
    container = full.task.container
    if not container.HasField("stop_grace_period"):
        container.stop_grace_period.CopyFrom(STOP_GRACE_PERIOD)
    if not full.HasField("endpoint"):
        full.endpoint.SetInParent()  # mode VIP, no ports
    return full
