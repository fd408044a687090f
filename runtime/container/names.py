"""Readable names for containers started without --name (like Docker's "brave_turing")."""

from __future__ import annotations

import os

ADJECTIVES = (
    "agile bold brave calm clever eager fond gentle happy jolly keen kind lucid merry nimble "
    "proud quiet quick sharp steady swift tender vivid wise zesty"
).split()
FISH = (
    "anchovy barracuda bass carp cod dory eel flounder grouper haddock halibut herring "
    "mackerel marlin minnow perch pike salmon sardine shad snapper sole sprat trout tuna wrasse"
).split()


def _pick(words: list[str]) -> str:
    """A random word (os.urandom: the random module costs every `shoal run` ~1 ms to import)."""
    return words[int.from_bytes(os.urandom(4), "big") % len(words)]


def generate(taken: set[str]) -> str:
    """A free adjective_fish name; a numeric suffix once the pairs run out."""
    for _ in range(100):
        name = f"{_pick(ADJECTIVES)}_{_pick(FISH)}"
        if name not in taken:
            return name
    n = 2
    while f"{name}{n}" in taken:
        n += 1
    return f"{name}{n}"
