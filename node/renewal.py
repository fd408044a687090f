"""Certificate renewal: every node renews its certificate (with a new key) at a random point
in 50-80 % of its lifetime, through a manager's cluster port, and keeps it on disk (0600).

Renewal is also how a role change reaches a node: the CA issues the role the cluster has
carried out (manager/role_manager.py), so a demoted manager's next certificate is a worker's;
swarmd renews at once when its session shows a role other than its certificate's.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from manager.ca.certificates import generate_node_key, seconds_until_renewal
from manager.ca.client import NodeCredentials, renew_certificate
from manager.ca.errors import CAError
from manager.ca.root_ca import utcnow
from node.identity import Identity, NodeState

log = logging.getLogger(__name__)

RETRY_SECONDS = (1.0, 60.0)  # first and longest wait after a failed renewal
RENEW_TIMEOUT_SECONDS = 10.0


class RenewalError(Exception):
    """No manager renewed the certificate."""


async def renew_through(
    managers: Sequence[str],
    current: NodeCredentials,
    timeout: float = RENEW_TIMEOUT_SECONDS,
) -> NodeCredentials:
    """A certificate for a new key from the first of `managers` (cluster ports, host:port)
    that issues one (only the raft leader can record it; the others refuse)."""
    if not managers:
        raise RenewalError("no manager address is known: the certificate cannot be renewed")
    key = generate_node_key()
    failures = []
    for address in managers:
        try:
            return await renew_certificate(address, current, key, timeout)
        except CAError as exc:
            failures.append(f"{address}: {exc}")
    raise RenewalError("certificate renewal failed at every manager: " + "; ".join(failures))


Renew = Callable[[Sequence[str], NodeCredentials], Awaitable[NodeCredentials]]


class CertificateRenewal:
    """`await run()` renews until cancelled; `on_renewed` sees each new certificate after it
    is on disk (a manager reloads its servers' credentials there)."""

    def __init__(
        self,
        identity: Identity,
        state: NodeState,
        on_renewed: Callable[[NodeCredentials], Awaitable[None]],
        *,
        renew: Renew = renew_through,
        clock: Callable[[], datetime.datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._identity = identity
        self._state = state  # shared with the daemon, which saves it too
        self._on_renewed = on_renewed
        self._renew = renew
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._now = asyncio.Event()

    def renew_now(self) -> None:
        """Renew at once (the node's role changed: its certificate must follow)."""
        self._now.set()

    async def _wait(self, delay: float) -> None:
        """`delay` seconds, or less when renew_now() is called meanwhile."""
        sleeping = asyncio.ensure_future(self._sleep(delay))
        woken = asyncio.ensure_future(self._now.wait())
        try:
            await asyncio.wait((sleeping, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            woken.cancel()
        self._now.clear()
        if sleeping.done() and not sleeping.cancelled():
            sleeping.result()  # the sleep's own failure, if any

    def managers(self) -> list[str]:
        """Where to renew: the known managers' cluster ports, this node's own first."""
        own = [self._state.remote_api] if self._state.remote_api else []
        return own + [m for m in self._state.managers if m not in own]

    async def run(self) -> None:
        retry = RETRY_SECONDS[0]
        credentials, _ = self._identity.load()
        delay = seconds_until_renewal(credentials.certificate, self._clock(), self._rng)
        while True:
            log.info("renewing the node certificate in %.0f s", delay)
            await self._wait(delay)
            try:
                credentials = await self._renew(self.managers(), credentials)
            except RenewalError as exc:
                log.warning("%s; retrying in %.0f s", exc, retry)
                delay, retry = retry, min(retry * 2, RETRY_SECONDS[1])
                continue
            retry = RETRY_SECONDS[0]
            self._state.role = credentials.identity.role.ou
            self._identity.save(credentials, self._state)
            log.info("node certificate renewed (role %s)", self._state.role)
            await self._on_renewed(credentials)
            delay = seconds_until_renewal(credentials.certificate, self._clock(), self._rng)
