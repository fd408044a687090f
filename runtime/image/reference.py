"""Image references, parsed and normalised as Docker does.

`busybox` is `docker.io/library/busybox:latest`; `10.77.0.2:5000/busybox:1` names a registry;
`repo@sha256:<hex>` pins a manifest by digest (a tag beside it is kept but the digest wins).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from runtime.image import digests
from runtime.image.errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
LEGACY_DOMAIN = "index.docker.io"
DOCKER_HUB_API = "registry-1.docker.io"  # where docker.io's registry API is served
MAX_NAME = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")


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


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost"):
        return DEFAULT_DOMAIN, name
    if first == LEGACY_DOMAIN:
        return DEFAULT_DOMAIN, rest
    return first, rest


def parse(text: str) -> Reference:
    """Parse and normalise `text`; an invalid reference raises InvalidReference naming it."""
    if not isinstance(text, str) or not text:
        raise InvalidReference("invalid reference: empty")
    if any(c.isspace() for c in text):
        raise InvalidReference(f"invalid reference {text!r}: contains whitespace")
    name, at, digest = text.partition("@")
    if at and not digests.is_digest(digest):
        raise InvalidReference(
            f"invalid reference {text!r}: digest must be sha256:<64 lowercase hex digits>"
        )
    tag: str | None = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReference(f"invalid reference {text!r}: invalid tag {tag!r}")
    domain, path = _split_domain(name)
    if not _DOMAIN.match(domain):
        raise InvalidReference(f"invalid reference {text!r}: invalid registry {domain!r}")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not _PATH_COMPONENT.match(component):
            problem = (
                "repository name must be lowercase"
                if _PATH_COMPONENT.match(component.lower())
                else f"invalid repository name component {component!r}"
            )
            raise InvalidReference(f"invalid reference {text!r}: {problem}")
    if len(f"{domain}/{path}") > MAX_NAME:
        raise InvalidReference(f"invalid reference {text!r}: name longer than {MAX_NAME}")
    if _HEX64.match(path.removeprefix("library/")) and domain == DEFAULT_DOMAIN:
        raise InvalidReference(
            f"invalid reference {text!r}: a repository name cannot be 64 hex digits"
        )
    if tag is None and not at:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest if at else None)
