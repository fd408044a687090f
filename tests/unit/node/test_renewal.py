"""Certificate renewal's schedule, retries and files, with a fake clock and a fake CA call."""

from __future__ import annotations

import asyncio
import datetime
import random
import socket
from collections.abc import Sequence
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from manager.ca.certificates import create_csr, generate_node_key
from manager.ca.client import NodeCredentials
from manager.ca.cluster_ca import ClusterCA
from manager.ca.pem import certificate_pem
from manager.ca.roles import Role
from manager.ca.root_ca import RootCA
from node.identity import Identity, NodeState
from node.renewal import CertificateRenewal, RenewalError, renew_through
from shoal.v1 import specs_pb2
from tests.polling import until_async

HOUR = datetime.timedelta(hours=1)
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class Stop(Exception):
    """Ends the renewal loop after the sleeps a test wants."""


class Harness:
    def __init__(self, tmp_path: Path, sleeps: int) -> None:
        spec = specs_pb2.ClusterSpec()
        spec.ca_config.node_cert_expiry.CopyFrom(Duration(seconds=3600))
        self.ca = ClusterCA.initialize(spec, now=START - HOUR)
        self.now = START
        self.sleeps: list[float] = []
        self.sleeps_left = sleeps
        self.failures_left = 0
        self.role = Role.MANAGER
        self.asked: list[list[str]] = []
        self.renewed: list[NodeCredentials] = []
        self.issued: list[tuple[NodeCredentials, datetime.datetime]] = []
        self.identity = Identity(tmp_path / "node")
        self.state = NodeState(
            node_id="node1",
            role=Role.MANAGER.ou,
            cluster_id=self.ca.cluster_id,
            hostname="h",
            remote_api="10.0.0.1:4242",
            managers=["10.0.0.2:4242", "10.0.0.1:4242"],
        )
        self.identity.save(self.issue(Role.MANAGER), self.state)

    def issue(self, role: Role) -> NodeCredentials:
        key = generate_node_key()
        certificate = self.ca.issue(create_csr(key), "node1", role, self.now)
        credentials = NodeCredentials(key, certificate, RootCA(self.ca.root.certificate))
        self.issued.append((credentials, self.now))
        return credentials

    async def sleep(self, seconds: float) -> None:
        if self.sleeps_left == 0:
            raise Stop
        self.sleeps_left -= 1
        self.sleeps.append(seconds)
        self.now += datetime.timedelta(seconds=seconds)

    async def renew(self, managers: Sequence[str], current: NodeCredentials) -> NodeCredentials:
        self.asked.append(list(managers))
        assert current.certificate.not_valid_after_utc > self.now, "renewed after expiry"
        if self.failures_left:
            self.failures_left -= 1
            raise RenewalError("certificate renewal failed at every manager: down")
        return self.issue(self.role)

    async def on_renewed(self, credentials: NodeCredentials) -> None:
        self.renewed.append(credentials)

    def renewal(self) -> CertificateRenewal:
        return CertificateRenewal(
            self.identity,
            self.state,
            self.on_renewed,
            renew=self.renew,
            clock=lambda: self.now,
            sleep=self.sleep,
            rng=random.Random(7),
        )

    async def run(self) -> None:
        with pytest.raises(Stop):
            await self.renewal().run()


def _window(credentials: NodeCredentials, issued: datetime.datetime) -> tuple[float, float]:
    """50-80 % of the certificate's validity (backdated by the clock-skew allowance), as
    seconds after `issued`."""
    start = credentials.certificate.not_valid_before_utc
    lifetime = credentials.certificate.not_valid_after_utc - start
    return (
        (start + lifetime * 0.5 - issued).total_seconds(),
        (start + lifetime * 0.8 - issued).total_seconds(),
    )


def _check_schedule(harness: Harness, sleeps: list[float]) -> None:
    """Each sleep in `sleeps` waits for the window of the certificate issued before it."""
    assert len(sleeps) <= len(harness.issued)
    for seconds, (credentials, issued) in zip(sleeps, harness.issued, strict=False):
        low, high = _window(credentials, issued)
        assert low <= seconds <= high, (seconds, low, high)


async def test_renews_within_50_to_80_percent_of_each_lifetime(tmp_path: Path) -> None:
    harness = Harness(tmp_path, sleeps=4)
    await harness.run()

    assert len(harness.sleeps) == len(harness.renewed) == 4
    _check_schedule(harness, harness.sleeps)
    low, high = _window(*harness.issued[0])
    assert high - low > 1000  # a real window, not an instant
    assert len(set(harness.sleeps)) > 1  # jittered, not a fixed period
    credentials, state = harness.identity.load()
    assert credentials.certificate == harness.renewed[-1].certificate
    assert credentials.key.public_key() == harness.renewed[-1].key.public_key()
    assert state.role == Role.MANAGER.ou
    for name in ("node.key", "node.crt"):
        assert (harness.identity.certs / name).stat().st_mode & 0o777 == 0o600


async def test_every_renewal_uses_a_new_key(tmp_path: Path) -> None:
    harness = Harness(tmp_path, sleeps=3)
    before, _ = harness.identity.load()
    await harness.run()

    keys = {certificate_pem(c.certificate) for c in harness.renewed}
    publics = {c.key.public_key().public_numbers() for c in harness.renewed}
    assert len(keys) == len(publics) == 3
    assert before.key.public_key().public_numbers() not in publics


async def test_failures_are_retried_with_a_growing_bounded_delay(tmp_path: Path) -> None:
    harness = Harness(tmp_path, sleeps=5)
    harness.failures_left = 3
    await harness.run()

    assert harness.sleeps[1:4] == [1.0, 2.0, 4.0]
    assert len(harness.renewed) == 2  # after the fourth attempt, then on schedule
    _check_schedule(harness, [harness.sleeps[0], harness.sleeps[4]])


async def test_asks_its_own_manager_first_then_the_others(tmp_path: Path) -> None:
    harness = Harness(tmp_path, sleeps=1)
    await harness.run()
    assert harness.asked == [["10.0.0.1:4242", "10.0.0.2:4242"]]


async def test_a_renewed_worker_certificate_changes_the_recorded_role(tmp_path: Path) -> None:
    harness = Harness(tmp_path, sleeps=1)
    harness.role = Role.WORKER
    await harness.run()

    credentials, state = harness.identity.load()
    assert credentials.identity.role is Role.WORKER
    assert state.role == Role.WORKER.ou
    assert harness.state.role == Role.WORKER.ou  # the daemon's copy too


async def test_renew_through_no_manager_is_a_clear_error(tmp_path: Path) -> None:
    current, _ = Harness(tmp_path, sleeps=0).identity.load()
    with pytest.raises(RenewalError, match="no manager address is known"):
        await renew_through([], current)


async def test_renew_through_names_every_manager_that_failed(tmp_path: Path) -> None:
    current, _ = Harness(tmp_path, sleeps=0).identity.load()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening
        with pytest.raises(RenewalError, match=f"failed at every manager: {address}: "):
            await renew_through([address], current, timeout=2)


async def test_renew_now_cuts_the_wait_short(tmp_path: Path) -> None:
    harness = Harness(tmp_path, sleeps=0)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) > 1:
            raise Stop
        await asyncio.Event().wait()  # the scheduled renewal is hours away

    renewal = harness.renewal()
    renewal._sleep = sleep
    running = asyncio.ensure_future(renewal.run())
    await until_async(lambda: waits, "the renewal to wait", interval_s=0, max_tries=100)
    assert not harness.renewed
    renewal.renew_now()
    with pytest.raises(Stop):
        await asyncio.wait_for(running, 5)
    assert len(harness.renewed) == 1
    assert len(waits) == 2 and waits[0] > 60  # woken long before its time
