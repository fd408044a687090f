"""The registry client against an in-process fake registry on loopback: auth, redirects,
verification, size and type limits, platform selection and uploads."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.image import mediatypes
from runtime.image.content_store import ContentStore
from runtime.image.errors import (
    AuthenticationError,
    ContentError,
    ManifestError,
    RegistryError,
    TransferInterrupted,
)
from runtime.image.manifests import MAX_MANIFEST_BYTES, Platform, select_platform
from runtime.image.registry_auth import Credentials, parse_challenge
from runtime.image.registry_client import RegistryClient
from tests.unit.runtime.image import images
from tests.unit.runtime.image.fake_registry import BlobHost, FakeRegistry, digest_of


def client_for(
    registry: FakeRegistry, credentials: Credentials | None = None, chunk_size: int = 1 << 20
) -> RegistryClient:
    return RegistryClient(
        registry.address, insecure=True, credentials=credentials, timeout=10, chunk_size=chunk_size
    )


def test_anonymous_bearer_token_flow(registry: FakeRegistry) -> None:
    registry.behaviour.auth = "bearer"
    image = images.build([images.layer_tar({"a": b"1"})])
    images.publish(registry, "team/app", "v1", image)
    client = client_for(registry)
    fetched = client.get_manifest("team/app", "v1")
    assert fetched.data == image.manifest
    assert fetched.media_type == mediatypes.OCI_MANIFEST
    assert fetched.digest == image.digest
    (token_request,) = registry.requests("GET", "/token")
    assert "Authorization" not in token_request.headers
    assert "scope=repository%3Ateam%2Fapp%3Apull" in token_request.path
    assert "service=fake" in token_request.path
    # The token is reused: a second request of the same scope asks for none.
    client.get_manifest("team/app", "v1")
    assert len(registry.requests("GET", "/token")) == 1
    last = registry.requests("GET", "/manifests/")[-1]
    assert last.headers["Authorization"].startswith("Bearer ")


def test_basic_credentials_go_to_the_token_endpoint(registry: FakeRegistry) -> None:
    registry.behaviour.auth = "bearer"
    registry.behaviour.users = {"alice": "s3cret"}
    images.publish(registry, "app", "v1", images.build([images.layer_tar({"a": b"1"})]))

    with pytest.raises(AuthenticationError, match="refused the credentials"):
        client_for(registry).get_manifest("app", "v1")
    with pytest.raises(AuthenticationError, match="refused the credentials"):
        client_for(registry, credentials=Credentials("alice", "wrong")).get_manifest("app", "v1")

    client = client_for(registry, credentials=Credentials("alice", "s3cret"))
    assert client.get_manifest("app", "v1").media_type == mediatypes.OCI_MANIFEST
    token_request = registry.requests("GET", "/token")[-1]
    assert token_request.headers["Authorization"] == Credentials("alice", "s3cret").basic_header()
    # The registry itself only ever sees the token, never the password.
    for seen in registry.requests("GET", "/v2/"):
        assert not seen.headers.get("Authorization", "").startswith("Basic")


def test_redirect_to_another_host_drops_authorization(registry: FakeRegistry) -> None:
    registry.behaviour.auth = "bearer"
    data = b"layer bytes" * 1000
    digest = registry.put_blob("app", data)
    with BlobHost(registry) as cdn:
        registry.behaviour.redirect_blobs_to = cdn.address
        start, chunks = client_for(registry).fetch_blob("app", digest)
        assert start == 0
        assert b"".join(chunks) == data
        assert cdn.authorizations == [None]
    # The registry did get the token (it was asked with Authorization).
    assert registry.requests("GET", "/blobs/")[-1].headers["Authorization"].startswith("Bearer")


def test_challenge_parsing() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge('Basic realm="x"').scheme == "basic"


def test_tampered_blob_is_refused_and_leaves_nothing(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    data = b"the real content" * 100
    digest = registry.put_blob("app", data)
    registry.behaviour.tampered[digest] = b"evil content!!!!" * 100  # same length
    store = ContentStore(tmp_path)
    client = client_for(registry)
    with pytest.raises(ContentError, match=f"{digest}: digest mismatch"):
        store.ingest(digest, len(data), lambda offset: client.fetch_blob("app", digest, offset))
    assert not store.has(digest)
    assert store.digests() == set()
    assert [p.name for p in store.ingest_dir.iterdir() if not p.name.endswith(".lock")] == []


def test_truncated_blob_is_refused_and_leaves_nothing(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 40
    digest = registry.put_blob("app", data)
    registry.behaviour.truncated[digest] = 1000  # the server ends the body early, cleanly
    store = ContentStore(tmp_path)
    client = client_for(registry)
    with pytest.raises(ContentError, match="truncated, got 1000 of 10240 bytes"):
        store.ingest(digest, len(data), lambda offset: client.fetch_blob("app", digest, offset))
    assert store.digests() == set()
    assert not list(store.ingest_dir.glob("*.partial"))


def test_interrupted_blob_resumes_with_range(registry: FakeRegistry, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    digest = registry.put_blob("app", data)
    registry.behaviour.truncated[digest] = 300_000
    registry.behaviour.close_early = True  # announces the full length, then hangs up
    store = ContentStore(tmp_path)
    client = client_for(registry)

    def fetch(offset: int) -> tuple[int, Iterator[bytes]]:
        return client.fetch_blob("app", digest, offset)

    with pytest.raises(TransferInterrupted, match="broke off"):
        store.ingest(digest, len(data), fetch)
    assert not store.has(digest)
    partial = store.ingest_dir / f"{digest.removeprefix('sha256:')}.partial"
    assert 0 < partial.stat().st_size <= 300_000
    kept = partial.stat().st_size

    del registry.behaviour.truncated[digest]
    assert store.ingest(digest, len(data), fetch) is True
    assert store.read(digest) == data
    assert registry.requests("GET", "/blobs/")[-1].headers["Range"] == f"bytes={kept}-"
    assert not partial.exists()


def test_wrong_manifest_media_type_is_refused(registry: FakeRegistry) -> None:
    images.publish(registry, "app", "v1", images.build([images.layer_tar({"a": b"1"})]))
    registry.behaviour.content_type["v1"] = "text/html"
    with pytest.raises(ManifestError, match="unsupported media type 'text/html'"):
        client_for(registry).get_manifest("app", "v1")
    registry.behaviour.content_type["v1"] = mediatypes.OCI_LAYER_GZIP
    with pytest.raises(ManifestError, match="unsupported media type"):
        client_for(registry).get_manifest("app", "v1")


def test_huge_manifest_is_refused(registry: FakeRegistry) -> None:
    images.publish(registry, "app", "v1", images.build([images.layer_tar({"a": b"1"})]))
    registry.behaviour.padded_manifest = MAX_MANIFEST_BYTES + 1
    with pytest.raises(ManifestError, match="larger than the 4194304 allowed"):
        client_for(registry).get_manifest("app", "v1")


def test_manifest_digest_must_match_the_one_asked_for(registry: FakeRegistry) -> None:
    image = images.build([images.layer_tar({"a": b"1"})])
    images.publish(registry, "app", "v1", image)
    other = "sha256:" + "0" * 64
    registry.manifests[("app", other)] = (image.manifest, image.media_type)
    with pytest.raises(ContentError, match="digest mismatch"):
        client_for(registry).get_manifest("app", other)


def test_missing_manifest_is_a_clear_error(registry: FakeRegistry) -> None:
    with pytest.raises(RegistryError, match=r"manifest app:nope: not found .*MANIFEST_UNKNOWN"):
        client_for(registry).get_manifest("app", "nope")


def test_index_platform_selection(registry: FakeRegistry) -> None:
    host = images.build([images.layer_tar({"host": b"1"})])
    other = images.build([images.layer_tar({"other": b"2"})])
    here = Platform("linux", "amd64")
    foreign = "linux/s390x"
    images.publish_index(registry, "app", "multi", {foreign: other, "linux/amd64": host})
    fetched = client_for(registry).get_manifest("app", "multi")
    assert fetched.media_type == mediatypes.OCI_INDEX
    chosen = select_platform(fetched.data, fetched.media_type, here)
    assert chosen.digest == host.digest
    assert select_platform(fetched.data, fetched.media_type, Platform("linux", "s390x")).digest == (
        other.digest
    )
    with pytest.raises(ManifestError, match=r"no image for platform linux/riscv64 .*linux/s390x"):
        select_platform(fetched.data, fetched.media_type, Platform("linux", "riscv64"))


def test_variant_selection() -> None:
    entries = [
        {
            "mediaType": mediatypes.OCI_MANIFEST,
            "digest": "sha256:" + c * 64,
            "size": 1,
            "platform": {"os": "linux", "architecture": "arm", "variant": v},
        }
        for c, v in (("a", "v6"), ("b", "v7"))
    ]
    data = json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
    chosen = select_platform(data, mediatypes.OCI_INDEX, Platform("linux", "arm", "v7"))
    assert chosen.digest == "sha256:" + "b" * 64


def test_monolithic_upload(registry: FakeRegistry) -> None:
    data = b"x" * 5000
    digest = digest_of(data)
    client = client_for(registry, chunk_size=10_000)
    location = client.start_upload("app")
    client.upload_blob("app", digest, len(data), io.BytesIO(data), location)
    assert registry.blobs[digest] == data
    assert client.blob_exists("app", digest)
    assert registry.requests("PATCH") == []
    (put,) = registry.requests("PUT", "/blobs/uploads/")
    assert f"digest={digest}" in put.path


def test_chunked_upload(registry: FakeRegistry) -> None:
    data = bytes(range(256)) * 14  # 3584 bytes
    digest = digest_of(data)
    client = client_for(registry, chunk_size=1000)
    sent: list[int] = []
    client.upload_blob(
        "app", digest, len(data), io.BytesIO(data), client.start_upload("app"), sent.append
    )
    assert registry.blobs[digest] == data
    ranges = [p.headers["Content-Range"] for p in registry.requests("PATCH")]
    assert ranges == ["0-999", "1000-1999", "2000-2999", "3000-3583"]
    assert sent == [1000, 1000, 1000, 584]
    (put,) = registry.requests("PUT", "/blobs/uploads/")
    assert put.headers["Content-Length"] == "0"


def test_cross_repository_mount(registry: FakeRegistry) -> None:
    registry.behaviour.auth = "bearer"
    digest = registry.put_blob("base/busybox", b"shared layer")
    client = client_for(registry)
    assert not client.blob_exists("mine/app", digest)
    assert client.mount_blob("mine/app", digest, "base/busybox") is None
    assert client.blob_exists("mine/app", digest)
    mount = registry.requests("POST", "mount=")[-1]
    assert f"mount={digest}&from=base/busybox" in mount.path
    # The token asked for covers both repositories.
    token_path = registry.requests("GET", "/token")[-1].path
    assert "repository%3Amine%2Fapp%3Apull%2Cpush" in token_path
    assert "repository%3Abase%2Fbusybox%3Apull" in token_path
    # A blob the source lacks is not mounted: the registry opens an upload instead.
    missing = digest_of(b"nowhere")
    location = client.mount_blob("mine/app", missing, "base/busybox")
    assert location is not None and "/v2/mine/app/blobs/uploads/" in location


def test_manifest_push(registry: FakeRegistry) -> None:
    image = images.build([images.layer_tar({"a": b"1"})], docker=True)
    client = client_for(registry)
    digest = client.put_manifest("app", "v9", image.manifest, image.media_type)
    assert digest == image.digest
    assert registry.manifests[("app", "v9")] == (image.manifest, mediatypes.DOCKER_MANIFEST)


def test_unreachable_registry_is_a_clear_error() -> None:
    client = RegistryClient("127.0.0.1:9", insecure=True, timeout=2)
    with pytest.raises(RegistryError, match=r"cannot reach 127\.0\.0\.1:9"):
        client.get_manifest("app", "v1")
