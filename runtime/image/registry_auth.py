"""Registry authentication: WWW-Authenticate challenges, bearer tokens, Basic credentials.

A registry answers 401 with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`; the
client then asks the realm (anonymously, or with Basic credentials when it has them) for a
token covering the scopes it needs, and retries with `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import urllib3

from runtime.image.errors import AuthenticationError, RegistryError

_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
MAX_TOKEN_RESPONSE = 1024 * 1024


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer" or "basic", lowercased
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


class Authenticator:
    """Authorization headers for one registry, with tokens cached per set of scopes."""

    def __init__(
        self,
        http: urllib3.PoolManager,
        registry: str,
        credentials: Credentials | None,
        allow_http_realm: bool,
        timeout: float,
    ) -> None:
        self._http = http
        self._registry = registry
        self._credentials = credentials
        self._allow_http_realm = allow_http_realm
        self._timeout = timeout
        self._lock = threading.Lock()
        self._headers: dict[tuple[str, ...], str] = {}

    def header(self, scopes: Sequence[str]) -> str | None:
        with self._lock:
            return self._headers.get(tuple(sorted(scopes)))

    def answer(self, challenge_header: str, scopes: Sequence[str]) -> str:
        """Meet a 401 challenge; returns (and caches) the Authorization header to retry with."""
        challenge = parse_challenge(challenge_header)
        if challenge.scheme == "basic":
            if self._credentials is None:
                raise AuthenticationError(
                    f"registry {self._registry} needs a username and password"
                )
            value = self._credentials.basic_header()
        elif challenge.scheme == "bearer":
            value = "Bearer " + self._token(challenge, scopes)
        else:
            raise AuthenticationError(
                f"registry {self._registry} asks for unsupported authentication "
                f"{challenge.scheme!r}"
            )
        with self._lock:
            self._headers[tuple(sorted(scopes))] = value
        return value

    def _token(self, challenge: Challenge, scopes: Sequence[str]) -> str:
        realm = challenge.params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AuthenticationError(
                f"registry {self._registry} gave an invalid token realm {realm!r}"
            )
        if parts.scheme == "http" and not self._allow_http_realm:
            raise AuthenticationError(
                f"registry {self._registry} wants credentials sent to a plain-HTTP realm {realm!r}"
            )
        wanted = list(dict.fromkeys([*scopes, *challenge.params.get("scope", "").split()]))
        query: list[tuple[str, str]] = []
        if "service" in challenge.params:
            query.append(("service", challenge.params["service"]))
        query += [("scope", s) for s in wanted if s]
        url = realm + ("&" if parts.query else "?") + urlencode(query)
        headers = {}
        if self._credentials is not None:
            headers["Authorization"] = self._credentials.basic_header()
        try:
            resp = self._http.request(
                "GET",
                url,
                headers=headers,
                redirect=False,
                retries=False,
                timeout=self._timeout,
                preload_content=False,
            )
            try:
                body = resp.read(MAX_TOKEN_RESPONSE + 1)
            finally:
                resp.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise RegistryError(f"cannot reach the token service {realm}: {exc}") from None
        if resp.status in (401, 403):
            raise AuthenticationError(
                f"token service {realm} refused the credentials for {self._registry}"
            )
        if resp.status != 200 or len(body) > MAX_TOKEN_RESPONSE:
            raise AuthenticationError(f"token service {realm} answered HTTP {resp.status}")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"token service {realm} gave no token")
        return token
