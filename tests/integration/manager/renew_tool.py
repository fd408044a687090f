"""One certificate renewal with a node's identity, for the role tests (run inside a lab
machine, which reaches the managers' addresses):

    python renew_tool.py STATE_DIR HOST:PORT...

The renewed certificate is not saved. Output is one line of JSON: the node id and role the
managers issued it for, or the RenewalError.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from node.identity import Identity
from node.renewal import RenewalError, renew_through


async def renew(state_dir: str, managers: list[str]) -> Any:
    current, _ = Identity(Path(state_dir)).load()
    try:
        renewed = await renew_through(managers, current)
    except RenewalError as exc:
        return {"error": "RenewalError", "details": str(exc)}
    identity = renewed.identity
    return {"node_id": identity.node_id, "role": identity.role.ou}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(renew(sys.argv[1], sys.argv[2:]))))
