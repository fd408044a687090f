"""The command groups of swarmctl, one module per kind of object."""
