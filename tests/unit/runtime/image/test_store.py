"""The image store against the fake registry: pull (single manifests, indexes, shared
layers, three at a time), names, removal with garbage collection, push with cross-repository
mounts, history and inspect. Layers here belong to the test's own user, so no root is needed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from common.image_reference import InvalidReference
from runtime import metrics
from runtime.config import EngineConfig
from runtime.image import mediatypes
from runtime.image.errors import (
    ImageError,
    ImageInUse,
    ImageNotFound,
    LayerError,
    ManifestError,
    RegistryError,
    TransferInterrupted,
)
from runtime.image.manifests import host_platform
from runtime.image.progress import ProgressEvent
from runtime.image.store import ImageStore
from tests.unit.runtime.image import images
from tests.unit.runtime.image.fake_registry import FakeRegistry

BASE = images.layer_tar({"bin/tool": b"#!/bin/sh\n", "etc/os-release": b"ID=test\n"})
APP = images.layer_tar({"app/main": b"print('hi')\n"})


def store_for(
    registry: FakeRegistry,
    root: Path,
    in_use: Callable[[str], bool] = lambda _image_id: False,
    upload_chunk_size: int = 1 << 20,
) -> ImageStore:
    config = EngineConfig(root=root, insecure_registries=(registry.address,))
    return ImageStore(config, in_use=in_use, upload_chunk_size=upload_chunk_size)


def sample(name: str) -> float:
    metrics.enable()  # metrics are off until a process that exports them turns them on
    return REGISTRY.get_sample_value(name) or 0.0


def blob_gets(registry: FakeRegistry) -> int:
    return len(registry.requests("GET", "/blobs/"))


def test_pull_unpacks_layers_for_overlay(registry: FakeRegistry, tmp_path: Path) -> None:
    built = images.build([BASE, APP], docker=True)
    images.publish(registry, "team/app", "v1", built)
    store = store_for(registry, tmp_path)
    events: list[ProgressEvent] = []
    before = sample("shoal_runtime_pull_bytes_total")
    pulls = sample("shoal_runtime_pull_seconds_count")

    image = store.pull(f"{registry.address}/team/app:v1", events.append)

    assert image.id == built.id
    assert image.manifest_digest == built.digest
    assert image.container_config["Cmd"] == ["sh"]
    assert image.config["rootfs"]["diff_ids"] == built.diff_ids
    assert image.repo_tags == (f"{registry.address}/team/app:v1",)
    assert image.repo_digests == (f"{registry.address}/team/app@{built.digest}",)
    top, bottom = image.lower_dirs()
    assert (top / "app" / "main").read_bytes() == b"print('hi')\n"
    assert (bottom / "etc" / "os-release").read_bytes() == b"ID=test\n"
    assert not (top / "etc").exists()
    assert all(
        len(str(d.name)) == 26 and d.parent == tmp_path / "images" / "l" for d in (top, bottom)
    )
    assert sample("shoal_runtime_pull_seconds_count") == pulls + 1
    assert sample("shoal_runtime_pull_bytes_total") - before == sum(
        len(b) for b in built.blobs
    ) + len(built.config)
    statuses = [(e.item, e.status) for e in events]
    for blob in built.blobs:
        item = images.digest_of(blob)[7:19]
        assert (item, "Pull complete") in statuses
    assert image.size == len(b"#!/bin/sh\n") + len(b"ID=test\n") + len(b"print('hi')\n")


def test_second_pull_downloads_nothing(registry: FakeRegistry, tmp_path: Path) -> None:
    images.publish(registry, "app", "v1", images.build([BASE, APP]))
    store = store_for(registry, tmp_path)
    first = store.pull(f"{registry.address}/app:v1")
    gets, manifest_gets = blob_gets(registry), len(registry.requests("GET", "/manifests/"))
    events: list[ProgressEvent] = []

    again = store.pull(f"{registry.address}/app:v1", events.append)

    assert again.id == first.id
    assert blob_gets(registry) == gets
    assert len(registry.requests("GET", "/manifests/")) == manifest_gets  # a HEAD sufficed
    assert {e.status for e in events} == {"Waiting", "Already exists"}


def test_shared_layer_is_fetched_and_unpacked_once(registry: FakeRegistry, tmp_path: Path) -> None:
    one = images.build([BASE, APP])
    two = images.build([BASE, images.layer_tar({"other": b"2"})])
    images.publish(registry, "one", "v1", one)
    images.publish(registry, "two", "v1", two)
    store = store_for(registry, tmp_path)
    store.pull(f"{registry.address}/one:v1")
    store.pull(f"{registry.address}/two:v1")
    base_digest = images.digest_of(one.blobs[0])
    assert len(registry.requests("GET", f"/blobs/{base_digest}")) == 1
    assert len(list((tmp_path / "images" / "layers").glob("[0-9a-f]*"))) == 3


def test_pull_of_an_index_picks_this_platform(registry: FakeRegistry, tmp_path: Path) -> None:
    here = images.build([APP])
    elsewhere = images.build([BASE])
    platform = f"linux/{host_platform().architecture}"
    index_digest = images.publish_index(
        registry, "multi", "latest", {"linux/s390x": elsewhere, platform: here}
    )
    image = store_for(registry, tmp_path).pull(f"{registry.address}/multi")
    assert image.id == here.id
    assert image.repo_digests == (f"{registry.address}/multi@{index_digest}",)
    assert registry.requests("GET", f"/blobs/{images.digest_of(elsewhere.blobs[0])}") == []


def test_downloads_run_three_at_a_time(registry: FakeRegistry, tmp_path: Path) -> None:
    layers = [images.layer_tar({f"f{i}": bytes([i]) * 100}) for i in range(6)]
    built = images.build(layers)
    images.publish(registry, "wide", "v1", built)
    registry.behaviour.gated = {images.digest_of(blob) for blob in built.blobs}
    registry.behaviour.gate = 6  # held until all six come at once, which they must not
    store_for(registry, tmp_path).pull(f"{registry.address}/wide:v1")
    assert registry.max_in_flight == 3


def test_persistently_broken_download_fails_and_leaves_nothing(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    big = images.layer_tar({"big": bytes(range(256)) * 2000})
    built = images.build([big])
    images.publish(registry, "app", "v1", built)
    digest = images.digest_of(built.blobs[0])
    registry.behaviour.truncated[digest] = 100
    registry.behaviour.close_early = True
    errors = sample("shoal_runtime_pull_errors_total")
    with pytest.raises(TransferInterrupted, match="broke off"):
        store_for(registry, tmp_path).pull(f"{registry.address}/app:v1")
    assert sample("shoal_runtime_pull_errors_total") == errors + 1
    assert len(registry.requests("GET", f"/blobs/{digest}")) == 3
    images_dir = tmp_path / "images"
    assert not (images_dir / "blobs" / "sha256" / digest[7:]).exists()
    assert list((images_dir / "ingest").glob("*.partial")) == []
    assert not (images_dir / "references.json").exists()


def test_diff_id_mismatch_leaves_no_layer(registry: FakeRegistry, tmp_path: Path) -> None:
    built = images.build([APP])
    config = json.loads(built.config)
    config["rootfs"]["diff_ids"] = ["sha256:" + "1" * 64]
    forged = images.rebuild_with_config(built, json.dumps(config).encode())
    images.publish(registry, "app", "v1", forged)
    with pytest.raises(LayerError, match="DiffID"):
        store_for(registry, tmp_path).pull(f"{registry.address}/app:v1")
    layers_dir = tmp_path / "images" / "layers"
    assert [p.name for p in layers_dir.iterdir() if not p.name.endswith(".lock")] == []


def test_unsupported_layer_type_is_refused(registry: FakeRegistry, tmp_path: Path) -> None:
    built = images.build([APP])
    manifest = json.loads(built.manifest)
    manifest["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    built.manifest = json.dumps(manifest).encode()
    images.publish(registry, "app", "v1", built)
    with pytest.raises(ManifestError, match="unsupported layer media type"):
        store_for(registry, tmp_path).pull(f"{registry.address}/app:v1")


def test_pull_errors_are_clear(registry: FakeRegistry, tmp_path: Path) -> None:
    store = store_for(registry, tmp_path)
    with pytest.raises(InvalidReference, match="must be lowercase"):
        store.pull("Nope")
    with pytest.raises(RegistryError, match="not found"):
        store.pull(f"{registry.address}/missing:v1")
    with pytest.raises(ImageNotFound, match="no such image: busybox"):
        store.get("busybox")


def test_tag_list_and_remove_collect_garbage(registry: FakeRegistry, tmp_path: Path) -> None:
    one = images.build([BASE, APP])
    two = images.build([BASE])
    images.publish(registry, "one", "v1", one)
    images.publish(registry, "two", "v1", two)
    store = store_for(registry, tmp_path)
    a = f"{registry.address}/one:v1"
    store.pull(a)
    store.pull(f"{registry.address}/two:v1")
    store.tag(a, "mine/one:latest")
    assert store.get("mine/one").id == one.id
    assert store.get(one.id[7:19]).id == one.id  # by short id
    assert {i.id for i in store.list()} == {one.id, two.id}

    # Another tag is left: only untagged (with the repository's digest name, like Docker).
    assert store.remove(a) == [
        f"Untagged: {a}",
        f"Untagged: {registry.address}/one@{one.digest}",
    ]
    assert store.get("mine/one").id == one.id
    blobs = tmp_path / "images" / "blobs" / "sha256"
    app_blob = images.digest_of(one.blobs[1])[7:]
    assert (blobs / app_blob).exists()

    events = store.remove("mine/one")
    assert events == ["Untagged: mine/one:latest", f"Deleted: {one.id}"]
    assert [i.id for i in store.list()] == [two.id]
    assert not (blobs / app_blob).exists()
    assert not (blobs / one.id[7:]).exists()
    assert (blobs / images.digest_of(one.blobs[0])[7:]).exists()  # still used by `two`
    assert len(list((tmp_path / "images" / "layers").glob("[0-9a-f]*"))) == 1
    assert len(list((tmp_path / "images" / "l").iterdir())) == 1
    with pytest.raises(ImageNotFound):
        store.get("mine/one")


def test_remove_by_digest_name_and_by_id(registry: FakeRegistry, tmp_path: Path) -> None:
    built = images.build([APP])
    images.publish(registry, "app", "v1", built)
    store = store_for(registry, tmp_path)
    store.pull(f"{registry.address}/app:v1")
    store.tag(f"{registry.address}/app:v1", "other:v2")
    with pytest.raises(ImageError, match="has several tags"):
        store.remove(built.id[7:19])
    events = store.remove(built.id[7:19], force=True)
    assert f"Deleted: {built.id}" in events
    assert store.list() == []
    assert list((tmp_path / "images" / "blobs" / "sha256").iterdir()) == []


def test_remove_refused_while_in_use(registry: FakeRegistry, tmp_path: Path) -> None:
    built = images.build([APP])
    images.publish(registry, "app", "v1", built)
    used: set[str] = set()
    store = store_for(registry, tmp_path, in_use=lambda image_id: image_id in used)
    ref = f"{registry.address}/app:v1"
    store.pull(ref)
    used.add(built.id)
    with pytest.raises(ImageInUse, match="used by a container"):
        store.remove(ref)
    assert store.get(ref).id == built.id
    assert store.remove(ref, force=True) == [
        f"Untagged: {ref}",
        f"Untagged: {registry.address}/app@{built.digest}",
    ]
    assert store.get(built.id).id == built.id  # kept, nameless, for its container
    used.clear()
    assert store.remove(built.id) == [f"Deleted: {built.id}"]


def test_push_mounts_blobs_from_the_source_repository(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    registry.behaviour.auth = "bearer"
    built = images.build([BASE, APP], docker=True)
    images.publish(registry, "base/app", "v1", built)
    store = store_for(registry, tmp_path / "one")
    store.pull(f"{registry.address}/base/app:v1")
    target = f"{registry.address}/copies/app:v2"
    store.tag(f"{registry.address}/base/app:v1", target)
    events: list[ProgressEvent] = []

    digest = store.push(target, events.append)

    assert digest == built.digest  # the manifest is pushed byte for byte
    assert registry.manifests[("copies/app", "v2")] == (built.manifest, mediatypes.DOCKER_MANIFEST)
    assert registry.requests("PUT", "/blobs/uploads/") == []  # nothing uploaded...
    mounted = {e.item for e in events if e.status == "Mounted from base/app"}
    assert len(mounted) == 3  # ...two layers and the config mounted
    assert f"{registry.address}/copies/app@{digest}" in store.get(target).repo_digests

    again = store_for(registry, tmp_path / "two").pull(target)
    assert again.id == built.id


def test_push_uploads_when_no_source_has_the_blobs(registry: FakeRegistry, tmp_path: Path) -> None:
    built = images.build([APP])
    images.publish(registry, "app", "v1", built)
    store = store_for(registry, tmp_path, upload_chunk_size=64)
    store.pull(f"{registry.address}/app:v1")
    with FakeRegistry() as other:
        store.config = EngineConfig(root=tmp_path, insecure_registries=(other.address,))
        store.tag(f"{registry.address}/app:v1", f"{other.address}/app:v1")
        store.push(f"{other.address}/app:v1")
        assert set(other.blobs) == {images.digest_of(built.blobs[0]), built.id}
        assert other.requests("PATCH")  # blobs larger than a chunk went in chunks
        assert other.manifests[("app", "v1")][0] == built.manifest


def test_history_and_inspect(registry: FakeRegistry, tmp_path: Path) -> None:
    built = images.build([BASE, APP], docker=True)
    images.publish(registry, "app", "v1", built)
    store = store_for(registry, tmp_path)
    ref = f"{registry.address}/app:v1"
    image = store.pull(ref)
    rows = store.history(ref)
    assert [r["created_by"] for r in rows] == ["layer 1", "layer 0"]
    assert rows[0]["id"] == built.id and rows[1]["id"] == "<missing>"
    assert [r["size"] for r in rows] == [len(b"print('hi')\n"), len(b"#!/bin/sh\nID=test\n")]
    info = store.inspect(ref)
    assert info["Id"] == built.id
    assert info["RepoTags"] == [ref]
    assert info["Config"]["Cmd"] == ["sh"]
    assert info["RootFS"]["Layers"] == built.diff_ids
    assert info["GraphDriver"]["Data"]["LowerDir"] == ":".join(map(str, image.lower_dirs()))
    assert info["Manifest"]["MediaType"] == mediatypes.DOCKER_MANIFEST
