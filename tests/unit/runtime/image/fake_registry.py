"""An in-memory Distribution API v2 registry on a loopback address, for unit tests.

It speaks enough of the protocol for pulls and pushes (manifests, blobs with Range, uploads
monolithic and chunked, cross-repository mounts), optionally demands Bearer tokens from its
own token endpoint (anonymous, or Basic credentials), and has knobs for hostile behaviour:
tampered or truncated blobs, a wrong Content-Type, redirects of blobs to another host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

UPLOAD = re.compile(r"^/v2/(?P<name>.+?)/blobs/uploads/(?P<id>[^/]*)$")
OBJECT = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Behaviour:
    auth: str = "none"  # "none" | "bearer"
    users: dict[str, str] = field(default_factory=dict)  # token endpoint's Basic users
    tampered: dict[str, bytes] = field(default_factory=dict)  # digest -> bytes served instead
    truncated: dict[str, int] = field(default_factory=dict)  # digest -> bytes really sent
    close_early: bool = False  # truncated blobs: announce the full length, then hang up
    content_type: dict[str, str] = field(default_factory=dict)  # manifest ref -> type served
    padded_manifest: int = 0  # serve manifests this many bytes long (huge manifest)
    redirect_blobs_to: str = ""  # "host:port" of a BlobHost
    mounts: bool = True
    # Hold each GET of these blobs until `gate` of them are held at once, at most
    # `gate_seconds`: the most held at once is then the client's concurrency.
    gated: set[str] = field(default_factory=set)
    gate: int = 0
    gate_seconds: float = 0.5


class FakeRegistry:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.behaviour = Behaviour()
        self.blobs: dict[str, bytes] = {}
        self.repo_blobs: dict[str, set[str]] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.uploads: dict[str, bytearray] = {}
        self.tokens: dict[str, set[str]] = {}
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.batch = 0
        self.gate = threading.Condition()
        self.server = ThreadingHTTPServer((host, 0), _handler(self))
        self.server.daemon_threads = True
        self.address = f"{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    # -- content ---------------------------------------------------------------------------

    def put_blob(self, repo: str, data: bytes) -> str:
        digest = digest_of(data)
        with self.lock:
            self.blobs[digest] = data
            self.repo_blobs.setdefault(repo, set()).add(digest)
        return digest

    def put_manifest(self, repo: str, tag: str, data: bytes, media_type: str) -> str:
        digest = digest_of(data)
        with self.lock:
            self.manifests[(repo, tag)] = (data, media_type)
            self.manifests[(repo, digest)] = (data, media_type)
        return digest

    def requests(self, method: str, contains: str = "") -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.method == method and contains in s.path]

    # -- auth ------------------------------------------------------------------------------

    def needed_scopes(self, method: str, name: str, query: dict[str, list[str]]) -> set[str]:
        action = "pull" if method in ("GET", "HEAD") else "pull,push"
        scopes = {f"repository:{name}:{action}"}
        if "from" in query:
            scopes.add(f"repository:{query['from'][0]}:pull")
        return scopes

    def granted(self, authorization: str) -> set[str]:
        if not authorization.startswith("Bearer "):
            return set()
        with self.lock:
            return self.tokens.get(authorization[len("Bearer ") :], set())

    def issue_token(self, authorization: str, scopes: list[str]) -> tuple[int, bytes]:
        users = self.behaviour.users
        if users:
            if not authorization.startswith("Basic "):
                return 401, b'{"details":"credentials required"}'
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if users.get(user) != password:
                return 401, b'{"details":"wrong credentials"}'
        token = uuid.uuid4().hex
        with self.lock:
            self.tokens[token] = set(scopes)
        return 200, json.dumps({"token": token, "expires_in": 300}).encode()


def _handler(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        # -- plumbing --------------------------------------------------------------------

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
            self._send(status, body, {"Content-Type": "application/json"})

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            with registry.lock:
                registry.seen.append(Seen(self.command, self.path, dict(self.headers.items())))
            if parts.path == "/token":
                status, body = registry.issue_token(
                    self.headers.get("Authorization", ""), query.get("scope", [])
                )
                self._send(status, body, {"Content-Type": "application/json"})
                return
            match = UPLOAD.match(parts.path) or OBJECT.match(parts.path)
            if parts.path == "/v2/":
                self._send(200, b"{}")
                return
            if match is None:
                self._error(404, "NOT_FOUND", parts.path)
                return
            name = match.group("name")
            if registry.behaviour.auth == "bearer":
                needed = registry.needed_scopes(self.command, name, query)
                if not needed <= registry.granted(self.headers.get("Authorization", "")):
                    self._body()
                    challenge = (
                        f'Bearer realm="http://{registry.address}/token",service="fake",'
                        f'scope="{sorted(needed)[0]}"'
                    )
                    self._send(401, b"", {"WWW-Authenticate": challenge})
                    return
            if "id" in match.groupdict():
                self._upload(name, match.group("id"), query)
            elif match.group("kind") == "manifests":
                self._manifest(name, match.group("ref"))
            else:
                self._blob(name, match.group("ref"))

        # -- manifests -------------------------------------------------------------------

        def _manifest(self, name: str, ref: str) -> None:
            if self.command == "PUT":
                data = self._body()
                media_type = self.headers.get("Content-Type", "")
                digest = registry.put_manifest(name, ref, data, media_type)
                self._send(201, b"", {"Docker-Content-Digest": digest})
                return
            with registry.lock:
                found = registry.manifests.get((name, ref))
            if found is None:
                self._error(404, "MANIFEST_UNKNOWN", f"{name}:{ref}")
                return
            data, media_type = found
            if registry.behaviour.padded_manifest:
                data = data + b" " * (registry.behaviour.padded_manifest - len(data))
            self._send(
                200,
                data,
                {
                    "Content-Type": registry.behaviour.content_type.get(ref, media_type),
                    "Docker-Content-Digest": digest_of(found[0]),
                },
            )

        # -- blobs -----------------------------------------------------------------------

        def _blob(self, name: str, digest: str) -> None:
            behaviour = registry.behaviour
            with registry.lock:
                data = registry.blobs.get(digest)
                here = digest in registry.repo_blobs.get(name, set())
            if data is None or not here:
                self._error(404, "BLOB_UNKNOWN", digest)
                return
            if behaviour.redirect_blobs_to and self.command == "GET":
                location = f"http://{behaviour.redirect_blobs_to}/cdn/{digest}"
                self._send(307, b"", {"Location": location})
                return
            if self.command == "GET" and digest in behaviour.gated:
                # Counted down before the body goes out, so a client cannot have started
                # its next request while this one still counts.
                with registry.gate:
                    batch = registry.batch
                    registry.in_flight += 1
                    registry.max_in_flight = max(registry.max_in_flight, registry.in_flight)
                    if registry.in_flight >= behaviour.gate:
                        registry.batch += 1  # release everyone held
                        registry.gate.notify_all()
                    else:
                        registry.gate.wait_for(
                            lambda: registry.batch != batch, timeout=behaviour.gate_seconds
                        )
                    registry.in_flight -= 1
            self._serve_blob(self, digest, data)

        @staticmethod
        def _serve_blob(handler: BaseHTTPRequestHandler, digest: str, data: bytes) -> None:
            behaviour = registry.behaviour
            data = behaviour.tampered.get(digest, data)
            start = 0
            match = re.match(r"bytes=(\d+)-$", handler.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
            status = 206 if start else 200
            body = data[start:]
            headers = {
                "Content-Type": "application/octet-stream",
                "Docker-Content-Digest": digest,
                "Content-Length": str(len(body)),
            }
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            if digest in behaviour.truncated:
                body = body[: max(0, behaviour.truncated[digest] - start)]
                if behaviour.close_early:
                    headers["Content-Length"] = str(len(data) - start)
                else:
                    headers["Connection"] = "close"
                    headers["Content-Length"] = str(len(body))
            handler.send_response(status)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(body)
            if digest in behaviour.truncated and behaviour.close_early:
                handler.close_connection = True

        # -- uploads ---------------------------------------------------------------------

        def _upload(self, name: str, upload_id: str, query: dict[str, list[str]]) -> None:
            if self.command == "POST" and not upload_id:
                self._body()
                if "mount" in query and registry.behaviour.mounts:
                    digest, source = query["mount"][0], query["from"][0]
                    with registry.lock:
                        mountable = digest in registry.repo_blobs.get(source, set())
                        if mountable:
                            registry.repo_blobs.setdefault(name, set()).add(digest)
                    if mountable:
                        self._send(201, b"", {"Location": f"/v2/{name}/blobs/{digest}"})
                        return
                new_id = uuid.uuid4().hex
                with registry.lock:
                    registry.uploads[new_id] = bytearray()
                self._send(202, b"", {"Location": f"/v2/{name}/blobs/uploads/{new_id}"})
                return
            with registry.lock:
                buffer = registry.uploads.get(upload_id)
            if buffer is None:
                self._body()
                self._error(404, "BLOB_UPLOAD_UNKNOWN", upload_id)
                return
            data = self._body()
            if self.command == "PATCH":
                content_range = self.headers.get("Content-Range", "")
                if content_range != f"{len(buffer)}-{len(buffer) + len(data) - 1}":
                    self._error(416, "BLOB_UPLOAD_INVALID", f"bad range {content_range!r}")
                    return
                buffer += data
                self._send(
                    202,
                    b"",
                    {
                        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
                        "Range": f"0-{len(buffer) - 1}",
                    },
                )
                return
            if self.command == "PUT":
                buffer += data
                digest = query.get("digest", [""])[0]
                if digest_of(bytes(buffer)) != digest:
                    self._error(400, "DIGEST_INVALID", digest)
                    return
                registry.put_blob(name, bytes(buffer))
                self._send(201, b"", {"Location": f"/v2/{name}/blobs/{digest}"})
                return
            self._error(405, "UNSUPPORTED", self.command)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _handle

    return Handler


class BlobHost:
    """Another host (e.g. 127.0.0.2) serving a registry's blobs, as a CDN a registry
    redirects to; it records the Authorization headers it was sent."""

    def __init__(self, registry: FakeRegistry, host: str = "127.0.0.2") -> None:
        self.registry = registry
        self.authorizations: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.authorizations.append(self.headers.get("Authorization"))
                digest = self.path.rsplit("/", 1)[-1]
                data = registry.blobs.get(digest, b"")
                self.send_response(200 if data else 404)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.address = f"{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> BlobHost:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
