"""A client of the Distribution API v2 (registries): manifests, blobs, uploads.

Plain HTTP only for registries the engine config lists as insecure, HTTPS otherwise.
Redirects are followed by hand so that Authorization never goes to another host. Everything
read is bounded: manifests to 4 MiB, error bodies and tokens to small sizes; blobs are
streamed to the caller, who verifies them (the content store).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import urllib3

from runtime.image import digests, mediatypes
from runtime.image.errors import (
    AuthenticationError,
    ContentError,
    ManifestError,
    RegistryError,
    TransferInterrupted,
)
from runtime.image.manifests import MAX_MANIFEST_BYTES
from runtime.image.registry_auth import Authenticator, Credentials

MAX_REDIRECTS = 5
MAX_ERROR_BODY = 64 * 1024
READ_CHUNK = 256 * 1024
DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024  # blobs larger than this are uploaded in PATCH chunks
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchedManifest:
    data: bytes
    media_type: str
    digest: str


def pull_scope(repo: str) -> str:
    return f"repository:{repo}:pull"


def push_scope(repo: str) -> str:
    return f"repository:{repo}:pull,push"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _media_type(resp: urllib3.BaseHTTPResponse) -> str:
    return (resp.headers.get("Content-Type") or "").split(";")[0].strip()


class RegistryClient:
    """One registry (`host[:port]`), used by one pull or push; safe to share between threads."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        credentials: Credentials | None = None,
        timeout: float = 60.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.host = host
        self.base = f"{'http' if insecure else 'https'}://{host}"
        self.chunk_size = chunk_size
        self._timeout = timeout
        self._http = urllib3.PoolManager(maxsize=8, retries=False)
        self._auth = Authenticator(self._http, host, credentials, insecure, timeout)

    def close(self) -> None:
        self._http.clear()

    # -- manifests -----------------------------------------------------------------------

    def head_manifest(self, repo: str, ref: str) -> tuple[str, str] | None:
        """(digest, media type) of a manifest without fetching it; None if the registry
        does not say its digest."""
        resp = self._request(
            "HEAD",
            f"/v2/{repo}/manifests/{ref}",
            scopes=[pull_scope(repo)],
            headers={"Accept": mediatypes.MANIFEST_ACCEPT},
            what=f"manifest {repo}:{ref}",
        )
        digest, media_type = resp.headers.get("Docker-Content-Digest"), _media_type(resp)
        if (
            not digest
            or not digests.is_digest(digest)
            or media_type not in mediatypes.ALL_MANIFESTS
        ):
            return None
        return digest, media_type

    def get_manifest(self, repo: str, ref: str) -> FetchedManifest:
        """A manifest or index by tag or digest, verified: its type is one we read, its size
        at most 4 MiB, and its digest the one asked for or announced."""
        what = f"manifest {repo}:{ref}" if not digests.is_digest(ref) else f"manifest {repo}@{ref}"
        resp = self._request(
            "GET",
            f"/v2/{repo}/manifests/{ref}",
            scopes=[pull_scope(repo)],
            headers={"Accept": mediatypes.MANIFEST_ACCEPT},
            what=what,
            stream=True,
        )
        try:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > MAX_MANIFEST_BYTES:
                raise ManifestError(
                    f"{what} is {length} bytes, larger than the {MAX_MANIFEST_BYTES} allowed"
                )
            media_type = _media_type(resp)
            if media_type not in mediatypes.ALL_MANIFESTS:
                raise ManifestError(f"{what} has unsupported media type {media_type!r}")
            data = self._read_bounded(resp, MAX_MANIFEST_BYTES + 1, what)
        finally:
            resp.release_conn()
        if len(data) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{what} is larger than the {MAX_MANIFEST_BYTES} bytes allowed")
        digest = digests.of_bytes(data)
        expected = ref if digests.is_digest(ref) else resp.headers.get("Docker-Content-Digest")
        if expected and expected != digest:
            raise ContentError(f"{what}: digest mismatch, expected {expected}, content is {digest}")
        return FetchedManifest(data, media_type, digest)

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        digest = digests.of_bytes(data)
        resp = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            scopes=[push_scope(repo)],
            headers={"Content-Type": media_type},
            body=data,
            ok=(201,),
            what=f"manifest {repo}:{ref}",
        )
        announced = resp.headers.get("Docker-Content-Digest")
        if announced and announced != digest:
            raise ContentError(
                f"registry stored manifest {repo}:{ref} as {announced}, expected {digest}"
            )
        return digest

    # -- blobs ---------------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self._request(
            "HEAD",
            f"/v2/{repo}/blobs/{digest}",
            scopes=[pull_scope(repo)],
            ok=(200, 404),
            what=f"blob {digest}",
        )
        return resp.status == 200

    def fetch_blob(self, repo: str, digest: str, offset: int = 0) -> tuple[int, Iterator[bytes]]:
        """Stream a blob from `offset` (a Range request); returns where the data starts
        (`offset`, or 0 when the server sends it whole) and its chunks."""
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        resp = self._request(
            "GET",
            f"/v2/{repo}/blobs/{digests.validate(digest)}",
            scopes=[pull_scope(repo)],
            headers=headers,
            ok=(200, 206),
            what=f"blob {digest}",
            stream=True,
        )
        start = 0
        if resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                resp.release_conn()
                raise ContentError(f"blob {digest}: unexpected Content-Range {content_range!r}")
            start = offset
        return start, self._chunks(resp, f"blob {digest}")

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> str | None:
        """Cross-repository mount; None when mounted, else the upload URL the registry opened."""
        resp = self._request(
            "POST",
            f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}",
            scopes=[push_scope(repo), pull_scope(from_repo)],
            ok=(201, 202),
            what=f"mount of blob {digest} from {from_repo}",
        )
        return None if resp.status == 201 else self._location(resp)

    def start_upload(self, repo: str) -> str:
        resp = self._request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            scopes=[push_scope(repo)],
            ok=(202,),
            what=f"upload to {repo}",
        )
        return self._location(resp)

    def upload_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        blob: BinaryIO,
        location: str,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Upload `size` bytes read from `blob` to the upload session at `location`: in one PUT
        when it fits in a chunk, else in PATCH chunks with Content-Range, closed by a PUT."""
        scopes = [push_scope(repo)]
        what = f"upload of blob {digest}"
        final_body: bytes = b""
        if size <= self.chunk_size:
            final_body = blob.read(size)
        else:
            offset = 0
            while offset < size:
                chunk = blob.read(min(self.chunk_size, size - offset))
                if not chunk:
                    raise ContentError(f"{what}: local blob is shorter than {size} bytes")
                resp = self._request(
                    "PATCH",
                    location,
                    scopes=scopes,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    },
                    body=chunk,
                    ok=(202,),
                    what=what,
                )
                location = self._location(resp)
                offset += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
        separator = "&" if urlsplit(location).query else "?"
        self._request(
            "PUT",
            f"{location}{separator}digest={digest}",
            scopes=scopes,
            headers={"Content-Type": "application/octet-stream"},
            body=final_body,
            ok=(201,),
            what=what,
        )
        if on_bytes is not None and final_body:
            on_bytes(len(final_body))

    # -- the request machinery -----------------------------------------------------------

    def _location(self, resp: urllib3.BaseHTTPResponse) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.host} gave no upload Location")
        url = urljoin(self.base + "/", location)
        if _origin(url) != _origin(self.base):
            raise RegistryError(f"registry {self.host} sent uploads to another host: {url}")
        return url

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        scopes: Sequence[str],
        what: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        ok: tuple[int, ...] = (200,),
        stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """Send a request, answering one auth challenge and following redirects (GET/HEAD)
        by hand; Authorization goes only to the registry's own origin."""
        url = urljoin(self.base + "/", path_or_url)
        home = _origin(self.base)
        auth = self._auth.header(scopes)
        challenged = False
        redirects = 0
        while True:
            send = dict(headers or {})
            if auth and _origin(url) == home:
                send["Authorization"] = auth
            try:
                resp = self._http.request(
                    method,
                    url,
                    headers=send,
                    body=body,
                    redirect=False,
                    retries=False,
                    timeout=self._timeout,
                    preload_content=False,
                    decode_content=False,
                )
            except urllib3.exceptions.HTTPError as exc:
                raise TransferInterrupted(
                    f"{what}: cannot reach {urlsplit(url).netloc}: {exc}"
                ) from None
            if resp.status in ok:
                if not stream:
                    resp.drain_conn()
                    resp.release_conn()
                return resp
            if resp.status in REDIRECTS and method in ("GET", "HEAD") and redirects < MAX_REDIRECTS:
                location = resp.headers.get("Location")
                resp.drain_conn()
                resp.release_conn()
                if location:
                    url = urljoin(url, location)
                    redirects += 1
                    continue
            if resp.status == 401 and not challenged and _origin(url) == home:
                challenge = resp.headers.get("WWW-Authenticate", "")
                resp.drain_conn()
                resp.release_conn()
                if not challenge:
                    raise AuthenticationError(f"{what}: registry {self.host} answered 401")
                auth = self._auth.answer(challenge, scopes)
                challenged = True
                continue
            raise self._failure(resp, what)

    def _failure(self, resp: urllib3.BaseHTTPResponse, what: str) -> RegistryError:
        try:
            raw = self._read_bounded(resp, MAX_ERROR_BODY, what)
        except RegistryError:
            raw = b""
        finally:
            resp.release_conn()
        detail = ""
        try:
            errors = json.loads(raw).get("errors") or []
            detail = "; ".join(
                f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors
            )
        except (ValueError, AttributeError, TypeError):
            pass
        suffix = f" ({detail})" if detail else ""
        if resp.status in (401, 403):
            return AuthenticationError(f"{what}: access denied by {self.host}{suffix}")
        if resp.status == 404:
            return RegistryError(f"{what}: not found in registry {self.host}{suffix}")
        return RegistryError(f"{what}: registry {self.host} answered HTTP {resp.status}{suffix}")

    @staticmethod
    def _read_bounded(resp: urllib3.BaseHTTPResponse, limit: int, what: str) -> bytes:
        out = bytearray()
        try:
            while len(out) < limit:
                chunk = resp.read(min(READ_CHUNK, limit - len(out)))
                if not chunk:
                    break
                out += chunk
        except urllib3.exceptions.HTTPError as exc:
            raise TransferInterrupted(f"{what}: transfer broke off: {exc}") from None
        return bytes(out)

    @staticmethod
    def _chunks(resp: urllib3.BaseHTTPResponse, what: str) -> Iterator[bytes]:
        try:
            while chunk := resp.read(READ_CHUNK):
                yield chunk
        except urllib3.exceptions.HTTPError as exc:
            raise TransferInterrupted(f"{what}: transfer broke off: {exc}") from None
        finally:
            resp.release_conn()
