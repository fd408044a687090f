"""Image references against Docker's reference grammar."""

from __future__ import annotations

import pytest

from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation import check_image_reference

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "reference",
    [
        "busybox",
        "busybox:1.36",
        "library/busybox:latest",
        "registry:5000/busybox:1",
        "Registry.Example.COM/team/app:v1.2.3-rc_1",
        "localhost/app",
        "[::1]:5000/app",
        "10.0.0.1:5000/a/b/c",
        "my-app__x.y/sub--path",
        f"busybox@{DIGEST}",
        f"busybox:1@{DIGEST}",
        "busybox@sha512:" + "a" * 128,
        "x:" + "t" * 128,
    ],
)
def test_valid(reference: str) -> None:
    check_image_reference("image", reference)


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        ("", "image: must be set"),
        ("UPPER", "invalid reference 'UPPER': repository name must be lowercase"),
        ("registry:5000/Busybox", "repository name must be lowercase"),
        ("busybox:", "not of the form"),
        ("busybox:-tag", "not of the form"),
        ("x:" + "t" * 129, "not of the form"),
        ("-busybox", "not of the form"),
        ("busy box", "not of the form"),
        ("a//b", "not of the form"),
        ("a/", "not of the form"),
        ("busybox@sha256:abc", "not of the form"),
        ("busybox@sha256:" + "a" * 63, "a sha256 digest has 64 hex digits, not 63"),
        ("busybox@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("a" * 64, "a 64-character hexadecimal string is an image id"),
        ("a" * 256, "repository name is 256 characters, more than 255"),
        ("a" * 600, "600 characters, more than 512"),
        ("busybox\n", "not of the form"),
        ("bùsybox", "not of the form"),
    ],
)
def test_invalid(reference: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_image_reference("image", reference)
    assert str(info.value).startswith("image: ")
    assert problem in str(info.value)


@pytest.mark.parametrize(
    "hostile", ["a" * 511 + "!", "a." * 255 + "!", "a-" * 255 + "-", "a/" * 255 + "!"]
)
def test_hostile_references_are_refused(hostile: str) -> None:
    """Long near-misses: a grammar with catastrophic backtracking would hang here (and hit
    the test timeout) instead of refusing."""
    with pytest.raises(InvalidArgument, match="not of the form"):
        check_image_reference("image", hostile)
