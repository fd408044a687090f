"""The shape an image config must have before Shoal uses it (the OCI image spec's config,
the fields Shoal reads typed strictly; unknown fields allowed, as the spec says).

A config is untrusted input like a layer: a string where a list of strings belongs would be
split into characters as a command, a number in Env would end a start in a traceback. Pulls
refuse such an image, naming the field."""

from __future__ import annotations

from typing import Any

_STRINGS_OR_NULL = {"type": ["array", "null"], "items": {"type": "string"}}
_MAP_OF_STRINGS = {"type": ["object", "null"], "additionalProperties": {"type": "string"}}
_SET = {"type": ["object", "null"], "additionalProperties": {"type": "object"}}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["rootfs"],
    "properties": {
        "created": {"type": "string"},
        "author": {"type": "string"},
        "architecture": {"type": "string"},
        "os": {"type": "string"},
        "variant": {"type": "string"},
        "config": {
            "type": ["object", "null"],
            "properties": {
                "User": {"type": "string"},
                "ExposedPorts": _SET,
                "Env": {
                    "type": ["array", "null"],
                    "items": {"type": "string", "pattern": "^[^=]+="},
                },
                "Entrypoint": _STRINGS_OR_NULL,
                "Cmd": _STRINGS_OR_NULL,
                "Volumes": _SET,
                "WorkingDir": {"type": "string"},
                "Labels": _MAP_OF_STRINGS,
                "StopSignal": {"type": "string"},
                "Healthcheck": {
                    "type": ["object", "null"],
                    "properties": {
                        "Test": _STRINGS_OR_NULL,
                        "Interval": {"type": "integer", "minimum": 0},
                        "Timeout": {"type": "integer", "minimum": 0},
                        "StartPeriod": {"type": "integer", "minimum": 0},
                        "Retries": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
        "rootfs": {
            "type": "object",
            "required": ["type", "diff_ids"],
            "properties": {
                "type": {"const": "layers"},
                "diff_ids": {
                    "type": "array",
                    "items": {"type": "string", "pattern": "^sha256:[a-f0-9]{64}$"},
                },
            },
        },
        "history": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "created": {"type": "string"},
                    "created_by": {"type": "string"},
                    "author": {"type": "string"},
                    "comment": {"type": "string"},
                    "empty_layer": {"type": "boolean"},
                },
            },
        },
    },
}


def problem(config: object) -> str | None:
    """Why `config` is not a usable image config ("config.Entrypoint: ..."), or None."""
    import jsonschema  # only when pulling: its import costs tens of milliseconds

    validator = jsonschema.Draft202012Validator(SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return None
    where = ".".join(str(part) for part in error.absolute_path) or "(the config)"
    return f"{where}: {error.message}"
