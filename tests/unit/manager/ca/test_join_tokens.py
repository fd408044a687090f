from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from manager.ca import base36
from manager.ca.errors import InvalidJoinToken, JoinTokenRefused, RootCAMismatch
from manager.ca.join_tokens import (
    DIGEST_CHARS,
    SECRET_CHARS,
    JoinToken,
    JoinTokens,
    check_root_pinned,
)
from manager.ca.roles import Role
from manager.ca.root_ca import RootCA

TOKEN_FORMAT = re.compile(r"^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$")


@pytest.fixture(scope="module")
def root() -> RootCA:
    return RootCA.create()


@pytest.fixture
def tokens(root: RootCA) -> JoinTokens:
    return JoinTokens.generate(root.digest)


def test_widths_fit_256_and_128_bits() -> None:
    assert DIGEST_CHARS == 50
    assert SECRET_CHARS == 25
    assert 36**DIGEST_CHARS >= 2**256 > 36 ** (DIGEST_CHARS - 1)


def test_token_format_and_digest(root: RootCA, tokens: JoinTokens) -> None:
    for token in (tokens.worker, tokens.manager):
        text = str(token)
        assert TOKEN_FORMAT.match(text), text
        digest_part = text.split("-")[2]
        assert base36.decode(digest_part) == int.from_bytes(root.digest, "big")
    assert tokens.worker != tokens.manager


def test_small_values_are_zero_padded_to_fixed_width() -> None:
    token = JoinToken(bytes(31) + b"\x01", bytes(15) + b"\x24")
    assert str(token) == "SWMTKN-1-" + "0" * 49 + "1-" + "0" * 23 + "10"
    assert JoinToken.parse(str(token)) == token


def test_generate_uses_the_given_random_source(root: RootCA) -> None:
    token = JoinToken.generate(root.digest, lambda n: b"\xff" * n)
    assert token.secret == b"\xff" * 16
    assert str(token).endswith("-" + base36.encode(2**128 - 1, 25))


def test_parse_round_trip(tokens: JoinTokens) -> None:
    assert JoinToken.parse(str(tokens.worker)) == tokens.worker


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: t.replace("SWMTKN", "SWMTOK"), "must start with 'SWMTKN', not 'SWMTOK'"),
        (lambda t: t.replace("-1-", "-2-", 1), "version '2' is not supported"),
        (lambda t: t + "-extra", "4 dash-separated parts.*got 5"),
        (lambda t: t.rsplit("-", 1)[0], "4 dash-separated parts.*got 3"),
        (lambda t: t[:-1], "secret has 24 characters, expected 25"),
        (lambda t: t + "0", "secret has 26 characters, expected 25"),
        (lambda t: t[:9] + "0" + t[9:], "CA digest has 51 characters, expected 50"),
        (lambda t: t[:-1] + "A", "secret is not base 36: 'A' at position 24"),
        (lambda t: t[:-1] + "_", "secret is not base 36"),
        (lambda t: t[:-25] + "+" + t[-24:], "secret is not base 36: '\\+' at position 0"),
        (lambda t: t[:9] + "z" * 50 + t[59:], "CA digest is larger than 256 bits"),
        (lambda t: t[:-25] + "z" * 25, "secret is larger than 128 bits"),
        (lambda t: "", "4 dash-separated parts.*got 1"),
    ],
)
def test_parse_errors_name_the_problem(
    tokens: JoinTokens, mangle: Callable[[str], str], message: str
) -> None:
    with pytest.raises(InvalidJoinToken, match=message):
        JoinToken.parse(mangle(str(tokens.worker)))


def test_role_of_current_tokens(tokens: JoinTokens) -> None:
    assert tokens.role_of(str(tokens.worker)) is Role.WORKER
    assert tokens.role_of(str(tokens.manager)) is Role.MANAGER


def test_wrong_secret_is_refused(tokens: JoinTokens) -> None:
    wrong = JoinToken(tokens.worker.ca_digest, bytes(16))
    with pytest.raises(JoinTokenRefused, match="wrong or has been rotated"):
        tokens.role_of(str(wrong))


def test_token_of_another_ca_is_refused(tokens: JoinTokens) -> None:
    other = JoinTokens.generate(RootCA.create().digest)
    with pytest.raises(JoinTokenRefused, match="another root CA"):
        tokens.role_of(str(other.worker))


def test_malformed_token_is_invalid_not_refused(tokens: JoinTokens) -> None:
    with pytest.raises(InvalidJoinToken):
        tokens.role_of("SWMTKN-1-short-short")


def test_rotation_refuses_the_old_token_and_keeps_the_other(tokens: JoinTokens) -> None:
    rotated = tokens.rotate(Role.WORKER)

    assert rotated.worker != tokens.worker
    assert rotated.worker.ca_digest == tokens.worker.ca_digest
    with pytest.raises(JoinTokenRefused):
        rotated.role_of(str(tokens.worker))
    assert rotated.role_of(str(rotated.worker)) is Role.WORKER
    assert rotated.manager == tokens.manager
    assert rotated.role_of(str(tokens.manager)) is Role.MANAGER

    again = rotated.rotate(Role.MANAGER)
    with pytest.raises(JoinTokenRefused):
        again.role_of(str(tokens.manager))
    assert again.worker == rotated.worker


def test_check_root_pinned(root: RootCA, tokens: JoinTokens) -> None:
    check_root_pinned(tokens.worker, root)
    with pytest.raises(RootCAMismatch, match="not the one the join token pins"):
        check_root_pinned(tokens.worker, RootCA.create())


def test_proto_round_trip(tokens: JoinTokens) -> None:
    message = tokens.to_proto()
    assert message.worker == str(tokens.worker)
    assert JoinTokens.from_proto(message) == tokens
    message.manager = "junk"
    with pytest.raises(InvalidJoinToken):
        JoinTokens.from_proto(message)
