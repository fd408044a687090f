"""The one error type of the lab's Prometheus."""

from deploy.errors import MachineError


class PrometheusError(MachineError):
    """Prometheus could not be started, stopped or asked; the message says what went wrong."""
