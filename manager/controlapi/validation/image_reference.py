"""Image references, checked against Docker's reference grammar (distribution/reference):

    reference := name [ ":" tag ] [ "@" digest ]
    name      := [ domain [ ":" port ] "/" ] path-component [ "/" path-component ]*
    path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag       := [\\w][\\w.-]{0,127}
    digest    := algorithm ":" hex{32,}   (sha256: exactly 64, sha512: exactly 128)

The name is at most 255 characters. The runtime has its own parser (runtime/ is out of
bounds for the manager); this one only decides whether a reference is acceptable.
"""

from __future__ import annotations

import re

from manager.controlapi.errors import InvalidArgument
from manager.controlapi.validation.fields import shown

MAX_NAME_CHARS = 255
# Name, a 128-character tag and a sha512 digest fit well within this; longer input is not
# worth running the pattern over.
MAX_REFERENCE_CHARS = 512

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_HEX_ID = re.compile(r"[a-f0-9]{64}")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


def check_image_reference(field: str, reference: str) -> None:
    """Raise InvalidArgument "<field>: invalid reference '<ref>': <why>" unless `reference`
    is a valid image reference."""

    def invalid(problem: str) -> InvalidArgument:
        return InvalidArgument(field, f"invalid reference {shown(reference)}: {problem}")

    if not reference:
        raise InvalidArgument(field, "must be set (an image reference)")
    if len(reference) > MAX_REFERENCE_CHARS:
        raise invalid(f"{len(reference)} characters, more than {MAX_REFERENCE_CHARS}")
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        if _REFERENCE.fullmatch(reference.lower()):
            raise invalid("repository name must be lowercase")
        raise invalid("not of the form [registry[:port]/]name[:tag][@digest]")
    name = match["name"]
    if len(name) > MAX_NAME_CHARS:
        raise invalid(f"repository name is {len(name)} characters, more than {MAX_NAME_CHARS}")
    if _HEX_ID.fullmatch(name):
        raise invalid("a 64-character hexadecimal string is an image id, not a name")
    digest = match["digest"]
    if digest is not None:
        algorithm, hex_digits = digest.split(":", 1)
        wanted = _DIGEST_LENGTHS.get(algorithm)
        if wanted is None:
            known = ", ".join(_DIGEST_LENGTHS)
            raise invalid(f"unsupported digest algorithm {algorithm!r} (expected {known})")
        if len(hex_digits) != wanted:
            raise invalid(f"a {algorithm} digest has {wanted} hex digits, not {len(hex_digits)}")
