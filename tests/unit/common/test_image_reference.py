"""Image references parse and normalise as Docker's do; bad ones are refused by name."""

from __future__ import annotations

import pytest

from common.errors import InvalidValue
from common.image_reference import InvalidReference, parse

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
        ("my-app__x/sub--path", "docker.io/my-app__x/sub--path:latest", None, None),
        (
            "Registry.Example.COM/team/app:v1.2.3-rc_1",
            "Registry.Example.COM/team/app:v1.2.3-rc_1",
            None,
            "Registry.Example.COM",
        ),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}", None),
        (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", None, None),
        ("[::1]:5000/app", "[::1]:5000/app:latest", None, "[::1]:5000"),
        ("x:" + "t" * 128, "docker.io/library/x:" + "t" * 128, None, None),
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
        ("UPPER", "invalid reference 'UPPER': repository name must be lowercase"),
        ("registry:5000/Busybox", "must be lowercase"),
        ("busy box", "whitespace"),
        ("busybox\n", "whitespace"),
        ("busybox:", "invalid tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox:" + "a" * 129, "invalid tag"),
        ("busybox:tàg", "invalid tag"),  # \w is ASCII in Docker's grammar
        ("bùsybox", "invalid repository name component"),
        ("busybox@sha256:abc", "a sha256 digest has 64 hex digits, not 3"),
        ("busybox@sha256:" + "a" * 63, "a sha256 digest has 64 hex digits, not 63"),
        ("busybox@sha256:" + "A" * 64, "digest must be sha256:<64 lowercase hex digits>"),
        ("busybox@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("busybox@sha512:" + "a" * 128, "unsupported digest algorithm 'sha512'"),
        ("busybox@" + "a" * 64, "digest must be"),
        ("/busybox", "invalid repository name component"),
        ("busybox/", "invalid repository name component"),
        ("a//b", "invalid repository name component"),
        ("-a/b", "invalid repository name component"),
        ("-busybox", "invalid repository name component"),
        ("a:b:c", "invalid repository name component"),
        ("bad_host!:5000/x", "invalid registry"),
        ("my-app__x.y/path", "invalid registry 'my-app__x.y'"),  # a dot: a registry
        ("[::ffff:10.0.0.1]:5000/x", "invalid registry"),
        ("a" * 64, "64 hex digits"),
        ("library/" + "a" * 64, "64 hex digits"),
        ("reg.io/" + "a" * 260, "the full name is 267 characters, more than 255"),
        ("a" * 240, "the full name is 258 characters, more than 255"),  # docker.io/library/...
        ("a" * 600, "600 characters, more than 512"),
    ],
)
def test_invalid_references_are_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidReference) as err:
        parse(text)
    assert problem in str(err.value)
    assert str(err.value).startswith(f"invalid reference {repr(text)[:40]}" if text else "")
    assert isinstance(err.value, InvalidValue)  # every CLI prints it as one line


@pytest.mark.parametrize(
    "hostile", ["a" * 511 + "!", "a." * 255 + "!", "a-" * 255 + "-", "a/" * 255 + "!"]
)
def test_hostile_references_are_refused_quickly_and_briefly(hostile: str) -> None:
    """Long near-misses: a grammar with catastrophic backtracking would hang here (and hit
    the test timeout) instead of refusing; the message quotes only the start."""
    with pytest.raises(InvalidReference) as err:
        parse(hostile)
    assert len(str(err.value)) < 400
