"""DiffIDs chain into ChainIDs as the OCI spec says; layers get short overlay names."""

from __future__ import annotations

import hashlib

import pytest

from runtime.image import digests
from runtime.image.errors import ManifestError

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


def test_chain_ids() -> None:
    ab = "sha256:" + hashlib.sha256(f"{A} {B}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {C}".encode()).hexdigest()
    assert digests.chain_ids([A, B, C]) == [A, ab, abc]
    assert digests.chain_ids([]) == []


@pytest.mark.parametrize(
    "bad", ["sha256:abc", "md5:" + "a" * 32, "sha256:" + "A" * 64, "sha256:../" + "a" * 61, ""]
)
def test_invalid_digests_are_refused(bad: str) -> None:
    with pytest.raises(ManifestError, match="invalid digest"):
        digests.validate(bad)
    with pytest.raises(ManifestError):
        digests.chain_ids([A, bad])


def test_short_ids_fit_twenty_layers_in_overlay_options() -> None:
    chains = digests.chain_ids([f"sha256:{i:064x}" for i in range(20)])
    shorts = [digests.short_id(c) for c in chains]
    assert len(set(shorts)) == 20
    assert all(len(s) == 26 and s.isalnum() for s in shorts)
    assert digests.short_id(chains[3]) == shorts[3]  # stable: derived, not random
    option = "lowerdir=" + ":".join(f"/var/lib/shoal/images/l/{s}" for s in shorts)
    assert len(option) < 4096 // 3  # a page, with room for upperdir, workdir and a long root
