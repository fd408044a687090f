"""The name a task goes by: its container's name on the node and its DNS name on its
networks, as Swarm names them. Shared by the agent and the managers, which must agree."""

from __future__ import annotations


def task_name(
    own: str, service_name: str, service_id: str, slot: int, node_id: str, task_id: str
) -> str:
    """`own` when the task has a name of its own; else `<service>.<slot>.<task id>`, or
    `<service>.<node id>.<task id>` for a global task (slot 0)."""
    if own:
        return own
    return f"{service_name or service_id}.{slot or node_id}.{task_id}"
