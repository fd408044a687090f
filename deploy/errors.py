"""The one error type of swarm-machine."""


class MachineError(Exception):
    """A problem the user caused or must know about; the CLI prints it as one line."""
