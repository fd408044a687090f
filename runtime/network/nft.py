"""Running the `nft` command: JSON in on stdin, one atomic transaction per call.

The one accepted exception to "no shelling out": the argument list is fixed and the ruleset
travels as a JSON document, never as shell text. The command runs in the calling thread's
network namespace (a forked child inherits the namespace of the thread that forked it).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runtime.network import nat_rules
from runtime.network.errors import NetworkError
from runtime.network.nft_json import FAMILY, Command

if TYPE_CHECKING:
    import subprocess

TIMEOUT_S = 30.0


class NftError(NetworkError):
    """nft refused a transaction; nothing of it was applied."""

    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr

    @property
    def exists(self) -> bool:
        return "File exists" in self.stderr

    @property
    def missing(self) -> bool:
        return "No such file or directory" in self.stderr


def _nft(args: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if binary is None:
        raise NetworkError("the nft command is missing: install the nftables package")
    import subprocess  # imported here: a bridged container start without -p never runs nft

    try:
        return subprocess.run(
            [binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise NetworkError(f"nft {' '.join(args)} did not finish in {TIMEOUT_S:.0f} s") from None


def run(commands: Sequence[Command], what: str) -> None:
    """Apply `commands` as one transaction; NftError (naming `what`) when nft refuses."""
    result = _nft(["-j", "-f", "-"], nat_rules.document(commands))
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()
        reason = detail[-1] if detail else f"exit status {result.returncode}"
        raise NftError(f"cannot {what}: nft: {reason}", result.stderr)


def list_table() -> list[dict[str, Any]] | None:
    """The objects of Shoal's table as `nft -j list table` gives them; None when absent."""
    result = _nft(["-j", "list", "table", FAMILY, nat_rules.TABLE])
    if result.returncode != 0:
        if "No such file or directory" in result.stderr:
            return None
        raise NftError(f"cannot list nft table: {result.stderr.strip()}", result.stderr)
    try:
        objects: list[dict[str, Any]] = json.loads(result.stdout)["nftables"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise NetworkError(f"nft printed a listing that is not JSON: {exc}") from None
    return objects
