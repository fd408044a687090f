from __future__ import annotations

import pytest

from manager.ca import base36


@pytest.mark.parametrize(("value", "width"), [(0, 1), (35, 1), (36, 2), (2**128 - 1, 25)])
def test_round_trip(value: int, width: int) -> None:
    text = base36.encode(value, width)
    assert len(text) == width
    assert base36.decode(text) == value


def test_encode_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="more than 1"):
        base36.encode(36, 1)
    with pytest.raises(ValueError, match="negative"):
        base36.encode(-1, 3)


@pytest.mark.parametrize("text", ["A", " 1", "1_0", "-1", "+1", "é"])
def test_decode_accepts_only_digits_and_lowercase(text: str) -> None:
    with pytest.raises(ValueError, match="not a base-36 digit"):
        base36.decode(text)


def test_width_for_bits() -> None:
    assert base36.width_for_bits(128) == 25
    assert base36.width_for_bits(256) == 50


def test_new_id_is_25_chars_from_the_random_source() -> None:
    assert base36.new_id(lambda n: bytes(n)) == "0" * 25
    ids = {base36.new_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 25 and set(i) <= set(base36.ALPHABET) for i in ids)
