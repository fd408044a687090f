"""Manifests and configs are validated before anything they name is fetched or used."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.image import mediatypes
from runtime.image.errors import ManifestError
from runtime.image.manifests import MAX_CONFIG_BYTES, parse_config, parse_manifest

DIGEST = "sha256:" + "a" * 64


def manifest(**changes: Any) -> bytes:
    obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": DIGEST, "size": 100},
        "layers": [{"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": DIGEST, "size": 5}],
    }
    obj.update(changes)
    return json.dumps(obj).encode()


def test_a_good_manifest() -> None:
    parsed = parse_manifest(manifest(), mediatypes.OCI_MANIFEST)
    assert parsed.config.size == 100
    assert [layer.media_type for layer in parsed.layers] == [mediatypes.OCI_LAYER_GZIP]


@pytest.mark.parametrize(
    ("data", "media_type", "message"),
    [
        (manifest(), mediatypes.OCI_INDEX, "unsupported manifest media type"),
        (manifest(), mediatypes.DOCKER_MANIFEST, "says mediaType"),
        (b"not json", mediatypes.OCI_MANIFEST, "not valid JSON"),
        (b"[1, 2]", mediatypes.OCI_MANIFEST, "not a JSON object"),
        (manifest(schemaVersion=1), mediatypes.OCI_MANIFEST, "schemaVersion"),
        (
            manifest(
                config={
                    "mediaType": "application/vnd.cncf.helm.config.v1+json",
                    "digest": DIGEST,
                    "size": 1,
                }
            ),
            mediatypes.OCI_MANIFEST,
            "not a container image",
        ),
        (
            manifest(
                config={
                    "mediaType": mediatypes.OCI_CONFIG,
                    "digest": DIGEST,
                    "size": MAX_CONFIG_BYTES + 1,
                }
            ),
            mediatypes.OCI_MANIFEST,
            "larger than the 8388608 allowed",
        ),
        (
            manifest(
                config={"mediaType": mediatypes.OCI_CONFIG, "digest": "sha256:../x", "size": 1}
            ),
            mediatypes.OCI_MANIFEST,
            "invalid digest",
        ),
        (
            manifest(layers=[{"mediaType": mediatypes.OCI_LAYER, "digest": DIGEST, "size": -1}]),
            mediatypes.OCI_MANIFEST,
            "invalid size",
        ),
        (manifest(layers="nope"), mediatypes.OCI_MANIFEST, "no list of layers"),
    ],
)
def test_bad_manifests_are_refused(data: bytes, media_type: str, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(data, media_type)


def config(**changes: Any) -> bytes:
    obj: dict[str, Any] = {"os": "linux", "rootfs": {"type": "layers", "diff_ids": [DIGEST]}}
    obj.update(changes)
    return json.dumps(obj).encode()


def test_configs() -> None:
    assert parse_config(config(), 1) == (DIGEST,)
    with pytest.raises(ManifestError, match="lists 1 diff_ids but the manifest has 2 layers"):
        parse_config(config(), 2)
    with pytest.raises(ManifestError, match="for os 'windows'"):
        parse_config(config(os="windows"), 1)
    with pytest.raises(ManifestError, match=r"no rootfs\.diff_ids"):
        parse_config(config(rootfs={}), 1)
    with pytest.raises(ManifestError, match="larger than"):
        parse_config(b" " * (MAX_CONFIG_BYTES + 1), 1)
