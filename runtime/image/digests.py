"""Content digests ("sha256:<hex>"), DiffIDs and ChainIDs.

Only sha256 is supported: it is what every registry and image builder uses, and a digest is
validated before it names a file, so a hostile manifest cannot smuggle a path through it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

from runtime.image.errors import ManifestError

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def validate(digest: str) -> str:
    """`digest` itself when it is a well-formed sha256 digest, else ManifestError."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ManifestError(f"invalid digest {digest!r} (expected sha256:<64 hex digits>)")
    return digest


def is_digest(text: str) -> bool:
    return bool(_DIGEST.match(text))


def hex_of(digest: str) -> str:
    return validate(digest)[len("sha256:") :]


def of_bytes(data: bytes) -> str:
    import hashlib  # loads OpenSSL: kept off the paths that only read images

    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(n))."""
    out: list[str] = []
    for diff_id in diff_ids:
        validate(diff_id)
        out.append(diff_id if not out else of_bytes(f"{out[-1]} {diff_id}".encode()))
    return out


def short_id(chain_id: str) -> str:
    """A 26-character name for a layer (130 bits of its ChainID in base32), short enough that
    overlay's lowerdir option (one page) holds many layers."""
    raw = bytes.fromhex(hex_of(chain_id))
    return base64.b32encode(raw).decode()[:26]
