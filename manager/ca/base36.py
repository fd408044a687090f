"""Fixed-width base-36 numbers (digits and lowercase letters), as join tokens and ids use."""

from __future__ import annotations

import secrets
from collections.abc import Callable

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_VALUES = {char: value for value, char in enumerate(ALPHABET)}


def width_for_bits(bits: int) -> int:
    """How many base-36 digits every `bits`-bit number needs."""
    width = 1
    while 36**width < 2**bits:
        width += 1
    return width


ID_BITS = 128
ID_CHARS = width_for_bits(ID_BITS)


def encode(value: int, width: int) -> str:
    """`value` in base 36, left-padded with zeros to exactly `width` digits."""
    if value < 0:
        raise ValueError(f"cannot encode negative number {value} in base 36")
    digits = []
    while value:
        value, digit = divmod(value, 36)
        digits.append(ALPHABET[digit])
    text = "".join(reversed(digits)).rjust(width, "0")
    if len(text) > width:
        raise ValueError(f"number needs {len(text)} base-36 digits, more than {width}")
    return text


def decode(text: str) -> int:
    """The number `text` spells; only 0-9 and a-z are accepted (no sign, space or `_`)."""
    value = 0
    for position, char in enumerate(text):
        digit = _VALUES.get(char)
        if digit is None:
            raise ValueError(f"{char!r} at position {position} is not a base-36 digit (0-9, a-z)")
        value = value * 36 + digit
    return value


def new_id(token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """A random 128-bit identifier (node ids, cluster ids), 25 base-36 digits."""
    return encode(int.from_bytes(token_bytes(ID_BITS // 8), "big"), ID_CHARS)
