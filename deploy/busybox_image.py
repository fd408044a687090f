"""The lab's seed image: busybox from Debian's busybox-static, as an OCI image layout.

Built here from the host's static binary (no download), byte for byte reproducible, then
pushed to the lab registry by skopeo, so Shoal's pull code is tested against what a
third-party pusher produces.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
EPOCH = 1700000000  # fixed timestamps keep the image reproducible
CREATED = "2023-11-14T22:13:20Z"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
INDEX_HTML = "<h1>hello from shoal's busybox</h1>\n"


def host_arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def applets() -> list[str]:
    out = subprocess.run([str(BUSYBOX), "--list"], check=True, capture_output=True, text=True)
    return sorted(set(out.stdout.split()) - {"busybox"})


def tar_entry(name: str, kind: bytes, mode: int, **extra: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    for key, value in extra.items():
        setattr(info, key, value)
    return info


def layer_tar() -> bytes:
    """The uncompressed root filesystem layer."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d, mode in (
            ("bin", 0o755),
            ("dev", 0o755),
            ("etc", 0o755),
            ("home", 0o755),
            ("proc", 0o555),
            ("root", 0o700),
            ("sys", 0o555),
            ("tmp", 0o1777),
            ("var", 0o755),
            ("var/www", 0o755),
        ):
            tar.addfile(tar_entry(d, tarfile.DIRTYPE, mode))
        binary = BUSYBOX.read_bytes()
        tar.addfile(
            tar_entry("bin/busybox", tarfile.REGTYPE, 0o755, size=len(binary)), io.BytesIO(binary)
        )
        for applet in applets():
            tar.addfile(tar_entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
        for name, text in (
            ("etc/passwd", PASSWD),
            ("etc/group", GROUP),
            ("var/www/index.html", INDEX_HTML),
        ):
            data = text.encode()
            tar.addfile(tar_entry(name, tarfile.REGTYPE, 0o644, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def put_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build_layout(layout: Path) -> None:
    """Write an OCI image layout with two refs: `latest` (a manifest) and `index` (an image
    index naming the host platform), both for the same busybox image."""
    raw = layer_tar()
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    layer = {"mediaType": OCI_LAYER_GZIP, **put_blob(layout, gzip.compress(raw, mtime=0))}
    arch = host_arch()
    config = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": {"Env": ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "swarm-machine: busybox-static"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **put_blob(layout, canonical_json(config))},
        "layers": [layer],
    }
    manifest_desc = {"mediaType": OCI_MANIFEST, **put_blob(layout, canonical_json(manifest))}
    image_index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{**manifest_desc, "platform": {"architecture": arch, "os": "linux"}}],
    }
    index_desc = {"mediaType": OCI_INDEX, **put_blob(layout, canonical_json(image_index))}
    top = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {**manifest_desc, "annotations": {REF_ANNOTATION: "latest"}},
            {**index_desc, "annotations": {REF_ANNOTATION: "index"}},
        ],
    }
    (layout / "index.json").write_bytes(canonical_json(top))
    (layout / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
