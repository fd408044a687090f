"""The image store: pull, push, tag, list, remove, history, inspect and commit, over the
content store (blobs), the layer store (unpacked layers) and the metadata (records, names).

Locks, always taken in this order so two processes (two `shoal` commands) can work at once:
images/gc.lock, shared by every pull, push and commit for their whole run and taken
exclusively by garbage collection, so no blob or layer being used is ever collected; then
images/metadata.lock, held only for short read-modify-writes of the records and names.
"""

from __future__ import annotations

import builtins
import contextlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.image_reference import InvalidReference, Reference, parse
from runtime import metrics
from runtime.config import EngineConfig
from runtime.files import flocked
from runtime.image import digests, mediatypes
from runtime.image.content_store import ContentStore
from runtime.image.errors import ImageError, ImageInUse, ImageNotFound
from runtime.image.image import Image, Layer
from runtime.image.layer_store import LayerStore
from runtime.image.manifests import Descriptor, load_json
from runtime.image.progress import Progress, quiet
from runtime.image.records import ImageRecord, LayerRecord, Metadata

if TYPE_CHECKING:  # the registry side (urllib3 and more) loads only when a registry is used
    from runtime.image.registry_auth import Credentials
    from runtime.image.registry_client import RegistryClient

_ID_PREFIX = re.compile(r"^(?:sha256:)?([0-9a-f]{4,64})$")


def _never_in_use(_image_id: str) -> bool:
    return False


class ImageStore:
    def __init__(
        self,
        config: EngineConfig,
        *,
        in_use: Callable[[str], bool] = _never_in_use,
        credentials: Mapping[str, Credentials] | None = None,
        upload_chunk_size: int | None = None,
    ) -> None:
        """`in_use(image_id)` says whether a container uses an image (removal is refused);
        `credentials` maps a registry domain to its username and password."""
        self.config = config
        self.content = ContentStore(config.images_dir)
        self.layers = LayerStore(config.images_dir)
        self.meta = Metadata(config.images_dir)
        self.in_use = in_use
        self.credentials = dict(credentials or {})
        self.upload_chunk_size = upload_chunk_size
        self._gc_lock = config.images_dir / "gc.lock"

    # -- registries ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _client(self, ref: Reference) -> Iterator[RegistryClient]:
        """A client made now, by the calling thread: its sockets (and its pull's threads)
        live in the caller's network namespace."""
        from runtime.image.registry_client import DEFAULT_CHUNK_SIZE, RegistryClient

        client = RegistryClient(
            ref.api_host,
            insecure=ref.domain in self.config.insecure_registries,
            credentials=self.credentials.get(ref.domain),
            chunk_size=self.upload_chunk_size or DEFAULT_CHUNK_SIZE,
        )
        try:
            yield client
        finally:
            client.close()

    def pull(self, ref: str, progress: Progress | None = None) -> Image:
        """Pull `ref` for this host's platform; layers already here are not fetched again."""
        started = time.monotonic()
        try:
            reference = parse(ref)
            with self._client(reference) as client, flocked(self._gc_lock, shared=True):
                from runtime.image.pull import Puller

                pulled = Puller(
                    client,
                    self.content,
                    self.layers,
                    self.config.max_concurrent_downloads,
                    progress or quiet,
                ).pull(reference)
                with self.meta.locked():
                    record = self.meta.record(pulled.record.id) or pulled.record
                    record.add_source(reference.repository)
                    self.meta.save_record(record)
                    refs = self.meta.references()
                    refs[f"{reference.repository}@{pulled.digest}"] = record.id
                    if reference.digest is None:
                        refs[str(reference)] = record.id
                    self.meta.save_references(refs)
        except BaseException:
            metrics.PULL_ERRORS.inc()
            raise
        metrics.PULL_SECONDS.observe(time.monotonic() - started)
        return self._image(record.id)

    def push(self, ref: str, progress: Progress | None = None) -> str:
        """Push the local image named `ref` to the registry it names; returns the digest of
        the manifest pushed."""
        reference = parse(ref)
        with self._client(reference) as client, flocked(self._gc_lock, shared=True):
            with self.meta.locked():
                image_id, _ = self._resolve(ref)
                record = self._record(image_id)
            from runtime.image.push import Pusher

            digest = Pusher(
                client, self.content, self.config.max_concurrent_downloads, progress or quiet
            ).push(reference, record)
            with self.meta.locked():
                record = self._record(image_id)
                record.add_source(reference.repository)
                self.meta.save_record(record)
                refs = self.meta.references()
                refs[f"{reference.repository}@{digest}"] = image_id
                self.meta.save_references(refs)
        return digest

    # -- local images --------------------------------------------------------------------

    def get(self, ref: str) -> Image:
        """The image named by a reference (tag or repo@digest) or by its id (or a prefix)."""
        return self._image(self._resolve(ref)[0])

    def list(self) -> builtins.list[Image]:
        images = [self._image(record.id) for record in self.meta.records()]
        return sorted(images, key=lambda image: image.created, reverse=True)

    def tag(self, src: str, dst: str) -> None:
        target = parse(dst)
        if target.digest is not None:
            raise InvalidReference(f"cannot tag {dst}: a tag cannot contain a digest")
        with self.meta.locked():
            image_id, _ = self._resolve(src)
            refs = self.meta.references()
            refs[str(target)] = image_id
            self.meta.save_references(refs)

    def remove(self, ref: str, force: bool = False) -> builtins.list[str]:
        """Untag `ref`; when no name is left, delete the image, then its blobs and layers no
        other image uses. By id, every name goes (several tags need `force`). Refused while
        `in_use` says a container uses it (with `force`: untagged but kept).
        Returns what was done, as Docker prints it."""
        events: builtins.list[str] = []
        with self.meta.locked():
            image_id, key = self._resolve(ref)
            refs = self.meta.references()
            names = [k for k, v in refs.items() if v == image_id]
            tags = [k for k in names if "@" not in k]
            if key is None:
                if len(tags) > 1 and not force:
                    raise ImageError(
                        f"image {digests.hex_of(image_id)[:12]} has several tags "
                        f"({', '.join(parse(t).familiar for t in tags)}): remove them by "
                        "name, or force"
                    )
                drop = names
            else:
                drop = [key]
                if "@" not in key:
                    repo = parse(key).repository
                    if not any(parse(t).repository == repo for t in tags if t != key):
                        drop += [k for k in names if "@" in k and parse(k).repository == repo]
            delete = not [k for k in names if k not in drop]
            if delete and self.in_use(image_id):
                if not force:
                    raise ImageInUse(
                        f"image {digests.hex_of(image_id)[:12]} is used by a container: "
                        "remove the container first"
                    )
                delete = False
            for k in drop:
                del refs[k]
                events.append(f"Untagged: {parse(k).familiar}")
            self.meta.save_references(refs)
            if delete:
                self.meta.delete_record(image_id)
                events.append(f"Deleted: {image_id}")
        if delete:
            self.collect_garbage()
        return events

    def collect_garbage(self) -> None:
        """Delete blobs and unpacked layers no image needs, and leftovers of interrupted
        work. Waits for running pulls, pushes and commits to end."""
        with flocked(self._gc_lock), self.meta.locked():
            records = self.meta.records()
            keep_blobs = {blob for record in records for blob in record.blobs()}
            keep_blobs |= {k.split("@", 1)[1] for k in self.meta.references() if "@" in k}
            keep_layers = {layer.chain_id for record in records for layer in record.layers}
            for digest in self.content.digests() - keep_blobs:
                self.content.delete(digest)
            for chain_id in self.layers.chain_ids() - keep_layers:
                self.layers.delete(chain_id)
            self.content.clear_ingest()
            self.layers.clear_leftovers()

    def history(self, ref: str) -> builtins.list[dict[str, Any]]:
        """The image's history, newest first, with each layer's unpacked size."""
        image = self.get(ref)
        raw = image.config.get("history")
        entries = [h for h in raw if isinstance(h, dict)] if isinstance(raw, list) else []
        if not entries:
            entries = [{} for _ in image.layers]
        sizes = iter(layer.unpacked_size for layer in image.layers)
        rows = []
        for entry in entries:
            empty = bool(entry.get("empty_layer"))
            rows.append(
                {
                    "id": "<missing>",
                    "created": str(entry.get("created", "")),
                    "created_by": str(entry.get("created_by", "")),
                    "size": 0 if empty else next(sizes, 0),
                    "comment": str(entry.get("comment", "")),
                    "empty_layer": empty,
                }
            )
        rows.reverse()
        rows[0]["id"] = image.id
        return rows

    def inspect(self, ref: str) -> dict[str, Any]:
        """The image as `docker image inspect` shows it (the parts Shoal has)."""
        image = self.get(ref)
        raw = image.config
        return {
            "Id": image.id,
            "RepoTags": [parse(t).familiar for t in image.repo_tags],
            "RepoDigests": [parse(d).familiar for d in image.repo_digests],
            "Created": image.created,
            "Author": str(raw.get("author", "")),
            "Config": image.container_config,
            "Architecture": str(raw.get("architecture", "")),
            "Os": str(raw.get("os", "")),
            "Size": image.size,
            "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in image.layers]},
            "GraphDriver": {
                "Name": "overlay",
                "Data": {"LowerDir": ":".join(str(p) for p in image.lower_dirs())},
            },
            "Manifest": {
                "Digest": image.manifest_digest,
                "MediaType": image.manifest_media_type,
            },
        }

    # -- commit --------------------------------------------------------------------------

    def commit(
        self,
        upper_dir: Path,
        base: Image,
        repo_tag: str,
        changes_to_config: dict[str, Any] | None = None,
        comment: str = "",
        author: str = "",
        created_by: str = "shoal commit",
    ) -> Image:
        """A new image: `base` plus one layer made of the overlayfs upper dir `upper_dir`,
        its container settings changed by `changes_to_config` (see commit.apply_changes),
        tagged `repo_tag`. Stored as an OCI manifest, ready to push."""
        target = parse(repo_tag)
        if target.digest is not None:
            raise InvalidReference(f"cannot commit to {repo_tag}: a tag cannot contain a digest")
        from runtime.image import commit as commits  # tarfile and friends: only for commit
        from runtime.image.layer_tar import write_layer

        commits.apply_changes({}, changes_to_config or {})  # refuse bad changes before work
        with flocked(self._gc_lock, shared=True):
            base_record = self._record(base.id)
            self.content.ingest_dir.mkdir(parents=True, exist_ok=True)
            scratch = self.content.ingest_dir / f"commit-{time.time_ns()}.tar.gz"
            try:
                with open(scratch, "w+b") as out:
                    written = write_layer(upper_dir, out)
                    out.seek(0)
                    self.content.ingest(
                        written.digest,
                        written.size,
                        lambda _offset: (0, iter(lambda: out.read(1 << 20), b"")),
                    )
            finally:
                scratch.unlink(missing_ok=True)
            diff_ids = [layer.diff_id for layer in base_record.layers] + [written.diff_id]
            chain_id = digests.chain_ids(diff_ids)[-1]
            self.layers.unpack(chain_id, written.diff_id, lambda: self.content.open(written.digest))
            new_layer = LayerRecord(
                written.digest, mediatypes.OCI_LAYER_GZIP, written.size, written.diff_id, chain_id
            )
            layers = [
                LayerRecord(
                    layer.digest,
                    mediatypes.TO_OCI_LAYER.get(layer.media_type, layer.media_type),
                    layer.size,
                    layer.diff_id,
                    layer.chain_id,
                )
                for layer in base_record.layers
            ] + [new_layer]
            config = commits.new_config(
                base.config, written, changes_to_config or {}, comment, author, created_by
            )
            config_digest = self.content.add(config)
            manifest = commits.new_manifest(config_digest, len(config), layers)
            manifest_digest = self.content.add(manifest)
            record = ImageRecord(
                id=config_digest,
                manifest=Descriptor(mediatypes.OCI_MANIFEST, manifest_digest, len(manifest)),
                config_size=len(config),
                layers=layers,
                sources=list(base_record.sources),
            )
            with self.meta.locked():
                self.meta.save_record(record)
                refs = self.meta.references()
                refs[str(target)] = record.id
                self.meta.save_references(refs)
        return self._image(record.id)

    # -- internals -----------------------------------------------------------------------

    def _resolve(self, text: str) -> tuple[str, str | None]:
        """(image id, the name it was found by, or None when found by id)."""
        refs = self.meta.references()
        try:
            reference: Reference | None = parse(text)
        except InvalidReference:
            reference = None
        if reference is not None:
            key = str(
                reference if reference.digest is None else reference.with_digest(reference.digest)
            )
            if key in refs:
                return refs[key], key
        match = _ID_PREFIX.match(text)
        if match:
            found = [
                r.id for r in self.meta.records() if digests.hex_of(r.id).startswith(match.group(1))
            ]
            if len(found) > 1:
                raise ImageError(f"image id prefix {text!r} is ambiguous")
            if found:
                return found[0], None
        if reference is None:
            parse(text)  # raises the reference's own error
        raise ImageNotFound(f"no such image: {text}")

    def _record(self, image_id: str) -> ImageRecord:
        record = self.meta.record(image_id)
        if record is None:
            raise ImageNotFound(f"no such image: {image_id}")
        return record

    def _image(self, image_id: str) -> Image:
        record = self._record(image_id)
        names = [k for k, v in self.meta.references().items() if v == image_id]
        layers = []
        for layer in record.layers:
            if not self.layers.has(layer.chain_id):
                raise ImageError(
                    f"image {image_id} is damaged: layer {layer.chain_id} is missing "
                    "(remove the image and pull it again)"
                )
            layers.append(
                Layer(
                    digest=layer.digest,
                    media_type=layer.media_type,
                    size=layer.size,
                    diff_id=layer.diff_id,
                    chain_id=layer.chain_id,
                    unpacked_size=self.layers.info(layer.chain_id).size,
                    link=self.layers.link(layer.chain_id),
                )
            )
        return Image(
            id=record.id,
            manifest_digest=record.manifest.digest,
            manifest_media_type=record.manifest.media_type,
            config=load_json(self.content.read(record.id), "image config"),
            layers=tuple(layers),
            repo_tags=tuple(sorted(k for k in names if "@" not in k)),
            repo_digests=tuple(sorted(k for k in names if "@" in k)),
        )
