"""Readable names for containers started without --name (like Docker's "brave_turing")."""

from __future__ import annotations

import secrets

ADJECTIVES = (
    "agile bold brave calm clever eager fond gentle happy jolly keen kind lucid merry nimble "
    "proud quiet quick sharp steady swift tender vivid wise zesty"
).split()
FISH = (
    "anchovy barracuda bass carp cod dory eel flounder grouper haddock halibut herring "
    "mackerel marlin minnow perch pike salmon sardine shad snapper sole sprat trout tuna wrasse"
).split()


def generate(taken: set[str]) -> str:
    """A free adjective_fish name; a numeric suffix once the pairs run out."""
    for _ in range(100):
        name = f"{secrets.choice(ADJECTIVES)}_{secrets.choice(FISH)}"
        if name not in taken:
            return name
    n = 2
    while f"{name}{n}" in taken:
        n += 1
    return f"{name}{n}"
