"""Pushing an image: each blob (layers, then config) unless the registry has it, mounted
from another repository of the same registry when the image came from one, else uploaded;
then the manifest, byte for byte as stored, so its digest is the image's."""

from __future__ import annotations

import concurrent.futures

from common.image_reference import Reference, parse
from runtime.image import mediatypes
from runtime.image.content_store import ContentStore
from runtime.image.errors import ImageError
from runtime.image.manifests import Descriptor
from runtime.image.progress import Progress, ProgressEvent, short
from runtime.image.records import ImageRecord
from runtime.image.registry_client import RegistryClient


class Pusher:
    def __init__(
        self,
        client: RegistryClient,
        content: ContentStore,
        max_concurrent: int,
        progress: Progress,
    ) -> None:
        self.client = client
        self.content = content
        self.max_concurrent = max(1, max_concurrent)
        self.progress = progress

    def push(self, ref: Reference, record: ImageRecord) -> str:
        """Push `record` as `ref` (which has a tag); returns the manifest's digest."""
        if ref.tag is None:
            raise ImageError(f"cannot push {ref}: pushing needs a tag, not a digest")
        mount_from = self._mount_source(ref, record)
        blobs = [Descriptor(layer.media_type, layer.digest, layer.size) for layer in record.layers]
        blobs.append(Descriptor(mediatypes.OCI_CONFIG, record.id, record.config_size))
        for blob in blobs:
            if not self.content.has(blob.digest):
                raise ImageError(f"cannot push {ref}: blob {blob.digest} is not stored locally")
        with concurrent.futures.ThreadPoolExecutor(self.max_concurrent, "push") as pool:
            futures = [pool.submit(self._blob, ref.path, blob, mount_from) for blob in blobs]
            for future in futures:
                future.result()
        manifest = self.content.read(record.manifest.digest)
        return self.client.put_manifest(ref.path, ref.tag, manifest, record.manifest.media_type)

    @staticmethod
    def _mount_source(ref: Reference, record: ImageRecord) -> str | None:
        """A repository of the same registry that has the image's blobs (path only)."""
        for source in record.sources:
            other = parse(source)
            if other.domain == ref.domain and other.path != ref.path:
                return other.path
        return None

    def _blob(self, repo: str, blob: Descriptor, mount_from: str | None) -> None:
        item = short(blob.digest)
        if self.client.blob_exists(repo, blob.digest):
            self.progress(ProgressEvent(item, "Layer already exists", blob.size, blob.size))
            return
        location: str | None = None
        if mount_from is not None:
            location = self.client.mount_blob(repo, blob.digest, mount_from)
            if location is None:
                self.progress(
                    ProgressEvent(item, f"Mounted from {mount_from}", blob.size, blob.size)
                )
                return
        if location is None:
            location = self.client.start_upload(repo)
        done = 0

        def counted(n: int) -> None:
            nonlocal done
            done += n
            self.progress(ProgressEvent(item, "Pushing", done, blob.size))

        with self.content.open(blob.digest) as data:
            self.client.upload_blob(repo, blob.digest, blob.size, data, location, counted)
        self.progress(ProgressEvent(item, "Pushed", blob.size, blob.size))
