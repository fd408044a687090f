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
    with pytest.raises(ManifestError, match=r"image config is invalid: rootfs: .* required"):
        parse_config(config(rootfs={}), 1)
    with pytest.raises(ManifestError, match="larger than"):
        parse_config(b" " * (MAX_CONFIG_BYTES + 1), 1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # A string where Docker's list of strings belongs: once split into characters.
        ({"config": {"Entrypoint": "sh -c"}}, r"config\.Entrypoint: 'sh -c' is not of type"),
        ({"config": {"Cmd": ["echo", 1]}}, r"config\.Cmd\.1: 1 is not of type 'string'"),
        # A number in Env ended a container start in a traceback.
        ({"config": {"Env": ["PATH=/bin", 7]}}, r"config\.Env\.1: 7 is not of type"),
        ({"config": {"Env": ["NOVALUE"]}}, r"config\.Env\.0: 'NOVALUE' does not match"),
        ({"config": {"Labels": {"a": 1}}}, r"config\.Labels\.a: 1 is not of type 'string'"),
        ({"config": {"User": 0}}, r"config\.User: 0 is not of type 'string'"),
        ({"config": "no"}, r"config: 'no' is not of type"),
        ({"rootfs": {"type": "layers", "diff_ids": ["md5:x"]}}, r"rootfs\.diff_ids\.0"),
        ({"history": [{"empty_layer": "yes"}]}, r"history\.0\.empty_layer"),
    ],
)
def test_a_config_of_the_wrong_shape_is_refused_naming_the_field(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ManifestError, match="image config is invalid: " + message):
        parse_config(config(**changes), 1)


def test_a_config_as_registries_serve_it_passes() -> None:
    served = config(
        architecture="amd64",
        created="2026-01-01T00:00:00Z",
        config={
            "Env": ["PATH=/usr/bin:/bin", "EMPTY="],
            "Cmd": ["sh"],
            "Entrypoint": None,
            "ExposedPorts": {"80/tcp": {}},
            "Labels": None,
            "WorkingDir": "",
            "OnBuild": None,  # unknown fields are allowed, as the spec says
        },
        history=[{"created_by": "ADD file", "empty_layer": False}],
    )
    assert parse_config(served, 1) == (DIGEST,)
