"""The Control API refuses a spec whose image reference the runtime could not parse, naming
the field (the grammar itself: tests/unit/common/test_image_reference.py)."""

from __future__ import annotations

import pytest

from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation import check_image_reference

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("reference", ["busybox", "registry:5000/busybox:1", f"busybox@{DIGEST}"])
def test_valid(reference: str) -> None:
    check_image_reference("image", reference)


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("", "image: must be set (an image reference)"),
        ("UPPER", "image: invalid reference 'UPPER': repository name must be lowercase"),
        ("busybox@sha512:" + "a" * 128, "unsupported digest algorithm 'sha512'"),
        ("a" * 600, "600 characters, more than 512"),
    ],
)
def test_invalid(reference: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_image_reference("image", reference)
    assert str(info.value).startswith("image: ")
    assert problem in str(info.value)
    assert info.value.field == "image"
