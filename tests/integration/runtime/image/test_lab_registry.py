"""The image store against the lab's real registry (Debian's docker-registry), from inside
lab machines: pulls of what skopeo pushed (Docker schema 2 and an OCI index), a second pull
that downloads nothing, a push with a cross-repository mount, a commit pushed from one
machine and pulled on another, and `shoal pull` through the real CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import REGISTRY

from common import libc
from common.namespaces import entered_netns
from runtime.config import EngineConfig
from runtime.image import mediatypes
from runtime.image.changes import Change, diff
from runtime.image.image import Image
from runtime.image.progress import ProgressEvent
from runtime.image.store import ImageStore
from tests.integration.conftest import LabHandle

SHOAL = str(Path(sys.executable).parent / "shoal")


def store_at(root: Path, lab: LabHandle) -> ImageStore:
    return ImageStore(EngineConfig(root=root, insecure_registries=(lab.registry,)))


def pulled_bytes() -> float:
    return REGISTRY.get_sample_value("shoal_runtime_pull_bytes_total") or 0.0


@contextmanager
def mounted(image: Image, target: Path) -> Iterator[Path]:
    """The image's layers (two or more) mounted read-only with overlayfs at `target`."""
    target.mkdir()
    options = "lowerdir=" + ":".join(str(d) for d in image.lower_dirs())
    libc.mount("overlay", str(target), "overlay", libc.MS_RDONLY, options)
    try:
        yield target
    finally:
        libc.umount(str(target))


def test_pull_both_formats_then_nothing_twice(
    make_lab: Callable[[int], LabHandle], tmp_path: Path
) -> None:
    lab = make_lab(1)
    (machine,) = lab.machines
    store = store_at(tmp_path / "shoal", lab)
    with entered_netns(machine.name):
        latest = store.pull(f"{lab.registry}/busybox:latest")
        before = pulled_bytes()
        events: list[ProgressEvent] = []
        again = store.pull(f"{lab.registry}/busybox:latest", events.append)
        assert pulled_bytes() == before  # nothing downloaded the second time
        index = store.pull(f"{lab.registry}/busybox:index")

    assert latest.manifest_media_type == mediatypes.DOCKER_MANIFEST  # skopeo --format v2s2
    assert again.id == latest.id
    assert {e.status for e in events} == {"Waiting", "Already exists"}
    assert index.id == latest.id  # the same config, reached through an OCI index
    (layer_dir,) = latest.lower_dirs()
    busybox = (layer_dir / "bin" / "busybox").lstat()
    assert stat.S_ISREG(busybox.st_mode) and stat.S_IMODE(busybox.st_mode) == 0o755
    assert os.readlink(layer_dir / "bin" / "sh") == "busybox"
    assert stat.S_IMODE((layer_dir / "tmp").lstat().st_mode) == 0o1777
    assert latest.container_config["Cmd"] == ["sh"]
    digests_by_repo = {d.split("@")[0] for d in store.get(latest.id).repo_digests}
    assert digests_by_repo == {f"{lab.registry}/busybox"}
    assert len(store.get(latest.id).repo_digests) == 2  # the v2s2 manifest and the index
    assert sorted(store.get(latest.id).repo_tags) == [
        f"{lab.registry}/busybox:index",
        f"{lab.registry}/busybox:latest",
    ]


def test_push_with_mount_and_pull_back(
    make_lab: Callable[[int], LabHandle], tmp_path: Path
) -> None:
    lab = make_lab(1)
    (machine,) = lab.machines
    store = store_at(tmp_path / "one", lab)
    copy = f"{lab.registry}/copies/busybox:v1"
    events: list[ProgressEvent] = []
    with entered_netns(machine.name):
        original = store.pull(f"{lab.registry}/busybox:latest")
        store.tag(f"{lab.registry}/busybox:latest", copy)
        digest = store.push(copy, events.append)
        back = store_at(tmp_path / "two", lab).pull(copy)

    assert digest == original.manifest_digest
    mounted_from = [e for e in events if e.status == "Mounted from busybox"]
    assert len(mounted_from) == 2  # the layer and the config: nothing uploaded
    assert back.id == original.id
    assert (back.lower_dirs()[0] / "bin" / "busybox").is_file()


def test_commit_push_and_pull_on_another_machine(
    make_lab: Callable[[int], LabHandle], tmp_path: Path
) -> None:
    lab = make_lab(2)
    first, second = lab.machines
    store = store_at(tmp_path / "first", lab)
    with entered_netns(first.name):
        base = store.pull(f"{lab.registry}/busybox:latest")

    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "added").write_text("added by a container\n")
    (upper / "etc" / "passwd").write_text("root:x:0:0:changed:/root:/bin/sh\n")
    (upper / "var" / "www").mkdir(parents=True)
    os.mknod(upper / "var" / "www" / "index.html", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "home").mkdir()
    os.setxattr(upper / "home", "trusted.overlay.opaque", b"y")
    (upper / "home" / "new").write_text("new\n")

    assert diff(upper, base.lower_dirs()) == [
        Change("/etc", "C"),
        Change("/etc/added", "A"),
        Change("/etc/passwd", "C"),
        Change("/home", "C"),
        Change("/home/new", "A"),
        Change("/var", "C"),
        Change("/var/www", "C"),
        Change("/var/www/index.html", "D"),
    ]

    target = f"{lab.registry}/committed/app:v1"
    image = store.commit(
        upper,
        base,
        target,
        {"Cmd": ["cat", "/etc/added"], "Env": ["GREETING=hi"]},
        comment="made by a test",
        author="shoal tests",
    )
    assert image.manifest_media_type == mediatypes.OCI_MANIFEST
    assert len(image.layers) == 2
    assert image.container_config["Cmd"] == ["cat", "/etc/added"]
    assert image.container_config["Env"] == ["PATH=/bin:/usr/bin:/sbin:/usr/sbin", "GREETING=hi"]
    assert image.config["history"][-1]["comment"] == "made by a test"
    assert image.config["author"] == "shoal tests"
    assert store.history(target)[0]["comment"] == "made by a test"

    events: list[ProgressEvent] = []
    with entered_netns(first.name):
        store.push(target, events.append)
    statuses = {e.item: e.status for e in events}
    assert statuses[image.layers[0].digest[7:19]] == "Mounted from busybox"
    assert statuses[image.layers[1].digest[7:19]] == "Pushed"

    with entered_netns(second.name):
        elsewhere = store_at(tmp_path / "second", lab).pull(target)
    assert elsewhere.id == image.id
    with mounted(elsewhere, tmp_path / "merged") as root:
        assert (root / "etc" / "added").read_text() == "added by a container\n"
        assert (root / "etc" / "passwd").read_text() == "root:x:0:0:changed:/root:/bin/sh\n"
        assert (root / "etc" / "group").is_file()  # untouched lower file still visible
        assert not (root / "var" / "www" / "index.html").exists()
        assert (root / "var" / "www").is_dir()
        assert os.listdir(root / "home") == ["new"]
        assert (root / "bin" / "busybox").is_file()


def test_shoal_pull_through_the_cli(make_lab: Callable[[int], LabHandle], tmp_path: Path) -> None:
    lab = make_lab(1)
    (machine,) = lab.machines
    ref = f"{lab.registry}/busybox:latest"
    base = [SHOAL, "--root", str(tmp_path / "shoal"), "--insecure-registry", lab.registry]

    def shoal(*args: str) -> subprocess.CompletedProcess[str]:
        proc = lab.run(
            machine, [*base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    pulled = shoal("pull", ref)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.startswith(f"Pulled {ref}: sha256:")
    listed = [json.loads(line) for line in shoal("images", "--format", "json").stdout.splitlines()]
    assert [(row["Repository"], row["Tag"]) for row in listed] == [
        (f"{lab.registry}/busybox", "latest")
    ]
    missing = shoal("pull", f"{lab.registry}/nothing:here")
    assert missing.returncode == 1
    assert missing.stderr.count("\n") == 1 and "not found in registry" in missing.stderr
