"""The config and manifest of a committed image: the base image plus one layer.

Committed images get an OCI image manifest (`application/vnd.oci.image.manifest.v1+json`)
with an OCI config type, whatever the base's format: every registry accepts it, and the base
layers' bytes and digests are unchanged (a Docker gzip layer is an OCI tar+gzip layer).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from runtime.image import mediatypes
from runtime.image.errors import ImageError
from runtime.image.layer_tar import WrittenLayer
from runtime.image.records import LayerRecord

# The container settings a commit may change (`docker commit --change` covers the same).
CHANGEABLE: dict[str, type] = {
    "Env": list,
    "Cmd": list,
    "Entrypoint": list,
    "WorkingDir": str,
    "User": str,
    "ExposedPorts": dict,
    "Volumes": dict,
    "Labels": dict,
    "StopSignal": str,
    "Healthcheck": dict,
    "OnBuild": list,
}


def apply_changes(config: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`config` (the container settings) with `changes` applied: Env entries and Labels are
    merged by name, every other key replaced. Unknown keys or wrong types are refused."""
    out = copy.deepcopy(config)
    for key, value in changes.items():
        kind = CHANGEABLE.get(key)
        if kind is None:
            allowed = ", ".join(sorted(CHANGEABLE))
            raise ImageError(f"cannot change {key!r} in a commit (allowed: {allowed})")
        if not isinstance(value, kind):
            raise ImageError(f"commit change {key!r} must be a {kind.__name__}")
        if key == "Env" and isinstance(value, list):
            merged = {e.split("=", 1)[0]: e for e in out.get("Env") or [] if isinstance(e, str)}
            for entry in value:
                if not isinstance(entry, str) or "=" not in entry:
                    raise ImageError(f"commit change Env: {entry!r} is not NAME=value")
                merged[entry.split("=", 1)[0]] = entry
            out["Env"] = list(merged.values())
        elif key == "Labels" and isinstance(value, dict):
            out["Labels"] = {**(out.get("Labels") or {}), **value}
        else:
            out[key] = value
    return out


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_config(
    base: dict[str, Any],
    layer: WrittenLayer,
    changes: dict[str, Any],
    comment: str,
    author: str,
    created_by: str,
) -> bytes:
    config = copy.deepcopy(base)
    created = now()
    config["created"] = created
    if author:
        config["author"] = author
    else:
        config.pop("author", None)
    section = config.get("config")
    config["config"] = apply_changes(section if isinstance(section, dict) else {}, changes)
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), layer.diff_id]
    entry: dict[str, Any] = {"created": created, "created_by": created_by}
    if author:
        entry["author"] = author
    if comment:
        entry["comment"] = comment
    history = config.get("history")
    config["history"] = [*(history if isinstance(history, list) else []), entry]
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def new_manifest(config_digest: str, config_size: int, layers: list[LayerRecord]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {
            "mediaType": mediatypes.OCI_CONFIG,
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": mediatypes.TO_OCI_LAYER.get(layer.media_type, layer.media_type),
                "digest": layer.digest,
                "size": layer.size,
            }
            for layer in layers
        ],
    }
    return json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
