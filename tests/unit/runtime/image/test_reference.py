"""Image references parse and normalise as Docker's do; bad ones are refused by name."""

from __future__ import annotations

import pytest

from runtime.image.errors import InvalidReference
from runtime.image.reference import parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "normalised", "familiar", "api_host"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest", "registry-1.docker.io"),
        ("busybox:1", "docker.io/library/busybox:1", "busybox:1", "registry-1.docker.io"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest", None),
        ("user/app:v2.0", "docker.io/user/app:v2.0", "user/app:v2.0", None),
        ("index.docker.io/user/app", "docker.io/user/app:latest", "user/app:latest", None),
        (
            "10.77.0.2:5000/busybox:latest",
            "10.77.0.2:5000/busybox:latest",
            "10.77.0.2:5000/busybox:latest",
            "10.77.0.2:5000",
        ),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest", "localhost"),
        ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest", None, None),
        ("reg.example.com/a_b/c-d.e__f", "reg.example.com/a_b/c-d.e__f:latest", None, None),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}", None),
        (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", None, None),
        ("[::1]:5000/app", "[::1]:5000/app:latest", None, "[::1]:5000"),
    ],
)
def test_parse_and_normalise(
    text: str, normalised: str, familiar: str | None, api_host: str | None
) -> None:
    ref = parse(text)
    assert str(ref) == normalised
    assert str(parse(str(ref))) == normalised  # normalising is idempotent
    if familiar is not None:
        assert ref.familiar == familiar
    if api_host is not None:
        assert ref.api_host == api_host


def test_parts_and_manifest_ref() -> None:
    ref = parse("10.77.0.2:5000/team/app:v1")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("10.77.0.2:5000", "team/app", "v1", None)
    assert ref.repository == "10.77.0.2:5000/team/app"
    assert ref.manifest_ref == "v1"
    pinned = parse(f"app:v1@{DIGEST}")
    assert pinned.manifest_ref == DIGEST  # the digest wins over the tag


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("Busybox", "must be lowercase"),
        ("busy box", "whitespace"),
        ("busybox:", "invalid tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox:" + "a" * 129, "invalid tag"),
        ("busybox@sha256:abc", "digest must be"),
        ("busybox@md5:" + "a" * 32, "digest must be"),
        ("/busybox", "invalid repository name component"),
        ("busybox/", "invalid repository name component"),
        ("a//b", "invalid repository name component"),
        ("-a/b", "invalid repository name component"),
        ("a:b:c", "invalid repository name component"),
        ("bad_host!:5000/x", "invalid"),
        ("a" * 64, "64 hex digits"),
        ("reg.io/" + "a" * 260, "longer than 255"),
    ],
)
def test_invalid_references_are_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidReference) as err:
        parse(text)
    assert problem in str(err.value)
    if text:
        assert repr(text) in str(err.value)  # the message names the input
