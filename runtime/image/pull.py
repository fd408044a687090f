"""Pulling an image: manifest (through an index when there is one), config, then layers,
three at a time, each downloaded into the content store and unpacked by ChainID.

Work already done is skipped: a layer whose ChainID is unpacked and whose blob is stored is
neither downloaded nor unpacked again, and a manifest whose digest (from a HEAD request) is
stored is read locally.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from common.image_reference import Reference
from runtime import metrics
from runtime.image import digests, mediatypes
from runtime.image.content_store import ContentStore
from runtime.image.errors import TransferInterrupted
from runtime.image.layer_store import LayerStore
from runtime.image.manifests import (
    Descriptor,
    host_platform,
    parse_config,
    parse_manifest,
    select_platform,
)
from runtime.image.progress import Progress, ProgressEvent, short
from runtime.image.records import ImageRecord, LayerRecord
from runtime.image.registry_client import FetchedManifest, RegistryClient

DOWNLOAD_ATTEMPTS = 3  # an interrupted download is resumed this many times in all


@dataclass(frozen=True)
class Pulled:
    record: ImageRecord
    digest: str  # what the reference resolved to (an index's digest, for a multi-arch tag)


class Puller:
    def __init__(
        self,
        client: RegistryClient,
        content: ContentStore,
        layers: LayerStore,
        max_concurrent: int,
        progress: Progress,
    ) -> None:
        self.client = client
        self.content = content
        self.layers = layers
        self.max_concurrent = max(1, max_concurrent)
        self.progress = progress

    def pull(self, ref: Reference) -> Pulled:
        repo = ref.path
        top = self._manifest(repo, ref.manifest_ref, None)
        fetched = top
        if top.media_type in mediatypes.INDEXES:
            chosen = select_platform(top.data, top.media_type, host_platform())
            fetched = self._manifest(repo, chosen.digest, chosen.media_type)
        manifest = parse_manifest(fetched.data, fetched.media_type)
        self._download(repo, manifest.config)
        diff_ids = parse_config(self.content.read(manifest.config.digest), len(manifest.layers))
        chains = digests.chain_ids(diff_ids)
        layers = [
            LayerRecord(desc.digest, desc.media_type, desc.size, diff_id, chain)
            for desc, diff_id, chain in zip(manifest.layers, diff_ids, chains, strict=True)
        ]
        self._layers(repo, layers)
        record = ImageRecord(
            id=manifest.config.digest,
            manifest=Descriptor(fetched.media_type, fetched.digest, len(fetched.data)),
            config_size=manifest.config.size,
            layers=layers,
            sources=[ref.repository],
        )
        return Pulled(record, top.digest)

    def _manifest(self, repo: str, ref: str, media_type: str | None) -> FetchedManifest:
        """A manifest from the content store when we know its digest and have it, else from
        the registry (and then stored)."""
        if not digests.is_digest(ref):
            known = self.client.head_manifest(repo, ref)
            if known is not None:
                ref, media_type = known
        if digests.is_digest(ref) and media_type is not None and self.content.has(ref):
            return FetchedManifest(self.content.read(ref), media_type, ref)
        fetched = self.client.get_manifest(repo, ref)
        self.content.add(fetched.data)
        return fetched

    def _download(self, repo: str, desc: Descriptor) -> None:
        item = short(desc.digest)
        done = 0

        def counted(n: int) -> None:
            nonlocal done
            done += n
            metrics.PULL_BYTES.inc(n)
            self.progress(ProgressEvent(item, "Downloading", done, desc.size))

        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                self.content.ingest(
                    desc.digest,
                    desc.size,
                    lambda offset: self.client.fetch_blob(repo, desc.digest, offset),
                    counted,
                )
                return
            except TransferInterrupted:
                if attempt == DOWNLOAD_ATTEMPTS:
                    self.content.abandon(desc.digest)
                    raise

    def _layer(self, repo: str, layer: LayerRecord) -> None:
        item = short(layer.digest)
        if self.layers.has(layer.chain_id) and self.content.has(layer.digest):
            self.layers.ensure_link(layer.chain_id)
            self.progress(ProgressEvent(item, "Already exists"))
            return
        desc = Descriptor(layer.media_type, layer.digest, layer.size)
        self._download(repo, desc)
        self.progress(ProgressEvent(item, "Extracting", layer.size, layer.size))
        self.layers.unpack(layer.chain_id, layer.diff_id, self._open(layer))
        self.progress(ProgressEvent(item, "Pull complete", layer.size, layer.size))

    def _open(self, layer: LayerRecord) -> Callable[[], BinaryIO]:
        return lambda: self.content.open(layer.digest)

    def _layers(self, repo: str, layers: list[LayerRecord]) -> None:
        for layer in layers:
            self.progress(ProgressEvent(short(layer.digest), "Waiting", 0, layer.size))
        # A pool per pull: its threads are made by the caller's thread, so they share its
        # network namespace (a lab machine's, in tests and for swarmd's agents).
        with concurrent.futures.ThreadPoolExecutor(self.max_concurrent, "pull") as pool:
            futures = [pool.submit(self._layer, repo, layer) for layer in layers]
            concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
            for future in futures:
                future.cancel()
            for future in futures:
                if not future.cancelled():
                    future.result()
