"""Image references, parsed and normalised as Docker does (distribution/reference):

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [ domain [ ":" port ] "/" ] path-component [ "/" path-component ]*
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest    := "sha256:" 64 lowercase hex digits

`busybox` is `docker.io/library/busybox:latest`; `10.77.0.2:5000/busybox:1` names a registry;
`repo@sha256:<hex>` pins a manifest by digest (a tag beside it is kept but the digest wins).
The name, normalised, is at most 255 characters. Only sha256 digests are accepted: they are
the only ones Shoal's runtime can verify.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from common.errors import InvalidValue, shown

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
LEGACY_DOMAIN = "index.docker.io"
DOCKER_HUB_API = "registry-1.docker.io"  # where docker.io's registry API is served
MAX_NAME = 255
# A name, a 128-character tag and a digest fit well within this; longer input is refused
# before any pattern runs over it.
MAX_REFERENCE = 512
DIGEST_ALGORITHM, DIGEST_HEX_DIGITS = "sha256", 64

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_HEX = re.compile(r"[0-9a-f]+")
_HEX64 = re.compile(r"[a-f0-9]{64}")


class InvalidReference(InvalidValue):
    """An image reference that does not parse."""


class Reference(NamedTuple):
    """A parsed image reference: registry domain, repository path, tag and/or digest."""

    domain: str  # "docker.io", "10.77.0.2:5000"
    path: str  # "library/busybox"
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The full repository name, e.g. "docker.io/library/busybox"."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        """The repository as Docker shows it: "busybox" rather than "docker.io/library/busybox"."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        return self.path.removeprefix("library/")

    @property
    def api_host(self) -> str:
        """The host:port serving the registry API for this reference's domain."""
        return DOCKER_HUB_API if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def manifest_ref(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    @property
    def familiar(self) -> str:
        """The whole reference as Docker shows it ("busybox:latest")."""
        return self._render(self.familiar_repository)

    def __str__(self) -> str:
        return self._render(self.repository)

    def _render(self, text: str) -> str:
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _digest_problem(digest: str) -> str | None:
    algorithm, colon, hex_digits = digest.partition(":")
    if not colon or not algorithm:
        return f"digest must be {DIGEST_ALGORITHM}:<{DIGEST_HEX_DIGITS} lowercase hex digits>"
    if algorithm != DIGEST_ALGORITHM:
        return f"unsupported digest algorithm {shown(algorithm, 20)} (expected sha256)"
    if not _HEX.fullmatch(hex_digits):
        return f"digest must be {DIGEST_ALGORITHM}:<{DIGEST_HEX_DIGITS} lowercase hex digits>"
    if len(hex_digits) != DIGEST_HEX_DIGITS:
        return f"a sha256 digest has {DIGEST_HEX_DIGITS} hex digits, not {len(hex_digits)}"
    return None


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        return DEFAULT_DOMAIN, name
    if first == LEGACY_DOMAIN:
        return DEFAULT_DOMAIN, rest
    return first, rest


def parse(text: str) -> Reference:
    """Parse and normalise `text`; an invalid reference raises InvalidReference naming it."""

    def invalid(problem: str) -> InvalidReference:
        return InvalidReference(f"invalid reference {shown(text)}: {problem}")

    if not isinstance(text, str) or not text:
        raise InvalidReference("invalid reference: empty")
    if len(text) > MAX_REFERENCE:
        raise invalid(f"{len(text)} characters, more than {MAX_REFERENCE}")
    if any(c.isspace() for c in text):
        raise invalid("contains whitespace")
    name, at, digest = text.partition("@")
    if at and (problem := _digest_problem(digest)):
        raise invalid(problem)
    tag: str | None = None
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise invalid(f"invalid tag {shown(tag)}")
    domain, path = _split_domain(name)
    if not _DOMAIN.fullmatch(domain):
        raise invalid(f"invalid registry {shown(domain)}")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
            if _PATH_COMPONENT.fullmatch(component.lower()):
                raise invalid("repository name must be lowercase")
            raise invalid(f"invalid repository name component {shown(component)}")
    if len(full := f"{domain}/{path}") > MAX_NAME:
        raise invalid(f"the full name is {len(full)} characters, more than {MAX_NAME}")
    if domain == DEFAULT_DOMAIN and _HEX64.fullmatch(path.removeprefix("library/")):
        raise invalid("a repository name cannot be 64 hex digits (that is an image id)")
    if tag is None and not at:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest if at else None)
