"""The errors of the image subsystem: each is a problem a user can cause or must know about.

The CLI prints any `ImageError` as one line; the message names what was wrong (the reference,
the blob, the layer entry), never a traceback.
"""

from __future__ import annotations

from runtime.errors import RuntimeEngineError


class ImageError(RuntimeEngineError):
    """Base of every error the image subsystem raises on purpose."""


class ImageNotFound(ImageError):
    """No local image matches a reference or id."""


class ImageInUse(ImageError):
    """An image a container still uses cannot be removed."""


class RegistryError(ImageError):
    """The registry refused a request, or could not be reached."""


class AuthenticationError(RegistryError):
    """The registry (or its token service) refused our credentials."""


class TransferInterrupted(RegistryError):
    """A download or upload broke off midway; trying again resumes or restarts it."""


class ManifestError(ImageError):
    """A manifest, index or config that is too large, of the wrong type, or malformed."""


class ContentError(ImageError):
    """Content whose digest or size is not what was announced (tampered or truncated)."""


class LayerError(ImageError):
    """A layer that cannot be unpacked: malformed, unsupported, or hostile."""


class UnsafeLayerEntry(LayerError):
    """A layer entry refused: it would write outside the layer directory, is not allowed by
    policy (device nodes), or cannot be applied (its parent is not a directory)."""

    def __init__(self, entry: str, problem: str) -> None:
        super().__init__(f"layer entry {entry!r} refused: {problem}")
        self.entry = entry
