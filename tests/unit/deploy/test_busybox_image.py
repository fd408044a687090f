"""The lab's seed image is a valid, reproducible OCI layout (built from the host's busybox)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from deploy import busybox_image


def _blob(layout: Path, digest: str) -> bytes:
    algo, hexdigest = digest.split(":")
    data = (layout / "blobs" / algo / hexdigest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexdigest
    return data


def _load(layout: Path, desc: dict[str, Any]) -> Any:
    data = _blob(layout, desc["digest"])
    assert len(data) == desc["size"]
    return json.loads(data)


def test_layout_is_reproducible(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    busybox_image.build_layout(one)
    busybox_image.build_layout(two)
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


def test_refs_manifest_config_and_layer_agree(tmp_path: Path) -> None:
    busybox_image.build_layout(tmp_path)
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    top = json.loads((tmp_path / "index.json").read_text())
    refs = {m["annotations"][busybox_image.REF_ANNOTATION]: m for m in top["manifests"]}
    assert set(refs) == {"latest", "index"}

    manifest = _load(tmp_path, refs["latest"])
    assert manifest["mediaType"] == busybox_image.OCI_MANIFEST
    image_index = _load(tmp_path, refs["index"])
    assert image_index["mediaType"] == busybox_image.OCI_INDEX
    (entry,) = image_index["manifests"]
    assert entry["digest"] == refs["latest"]["digest"]
    assert entry["platform"] == {"architecture": busybox_image.host_arch(), "os": "linux"}

    config = _load(tmp_path, manifest["config"])
    (layer_desc,) = manifest["layers"]
    raw = gzip.decompress(_blob(tmp_path, layer_desc["digest"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]

    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
    for applet in ("sh", "httpd", "sleep", "nc", "wget"):
        assert members[f"bin/{applet}"].issym()
        assert members[f"bin/{applet}"].linkname == "busybox"
    assert members["tmp"].mode == 0o1777
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
