"""What the replicated and the global orchestrator share: each keeps the services of one
mode (`serves`) and their tasks (`owns`), slot by slot.

- Work: a service (on start, on every change; the rest of it in the next transaction when
  one reaches the change limit), a slot (its runnable task was deleted, or something
  happened to its task: `slot_changed`), a node (`node_changed`).
- A service that is new or whose spec changed is *revived* at its next reconciliation:
  slots (or nodes) whose tasks ended for good get a task again. A slot whose runnable task
  was deleted is *refilled*.
- A service removed, being removed, or of another mode now: its tasks all get desired
  state REMOVE.

The mode's own decisions are the subclass's: `keep_service`, `keep_slot`, `reconcile_node`.
"""

from __future__ import annotations

import abc

from manager.orchestrator.eligibility import is_live
from manager.orchestrator.metrics import Tally
from manager.orchestrator.reconciler import Reconciler, commit
from manager.orchestrator.replacement import set_desired
from manager.orchestrator.slots import SlotKey, slot_key
from manager.orchestrator.tasks import is_runnable
from manager.orchestrator.work import NodeWork, ServiceWork, SlotWork
from manager.store import Event, EventAction, Kind, ReadTx, WriteTx
from shoal.v1 import objects_pb2, types_pb2

Work = ServiceWork | SlotWork | NodeWork


def spec_changed(old: objects_pb2.Service, new: objects_pb2.Service) -> bool:
    return old.spec != new.spec or old.spec_version != new.spec_version


class ModeOrchestrator(Reconciler[Work]):
    kinds = (Kind.SERVICE, Kind.TASK, Kind.NODE)

    # -- what a mode implements ---------------------------------------------------------

    @abc.abstractmethod
    def serves(self, service: objects_pb2.Service) -> bool:
        """The service is of this orchestrator's mode."""

    @abc.abstractmethod
    def owns(self, task: objects_pb2.Task) -> bool:
        """The task is one of this orchestrator's (a task of a service of its mode)."""

    @abc.abstractmethod
    def slot_changed(self, old: objects_pb2.Task, new: objects_pb2.Task) -> bool:
        """An update of one of its tasks that calls for a look at the task's slot."""

    @abc.abstractmethod
    def node_changed(
        self, node_id: str, old: objects_pb2.Node | None, new: objects_pb2.Node | None
    ) -> None:
        """Put on the agenda what a node's change (new None: its removal) requires."""

    @abc.abstractmethod
    def keep_service(
        self, tx: WriteTx, tally: Tally, service: objects_pb2.Service, now: float, revive: bool
    ) -> bool:
        """Reconcile a live service of this mode; True when it stopped at the change limit."""

    @abc.abstractmethod
    def keep_slot(
        self, tx: WriteTx, tally: Tally, service: objects_pb2.Service, key: SlotKey, now: float
    ) -> None:
        """Reconcile one slot of a live service of this mode (see `refilling`)."""

    @abc.abstractmethod
    async def reconcile_node(self, node_id: str, now: float) -> None:
        """Reconcile the tasks a node holds or should hold, in store transactions."""

    # -- the shared part ----------------------------------------------------------------

    def reset(self) -> None:
        # Services whose next reconciliation revives dead slots (new, or their spec changed).
        self._revive: set[str] = set()
        # Slots whose runnable task was deleted: they get a new one.
        self._refill: set[SlotKey] = set()

    def load(self, tx: ReadTx) -> None:
        for service in tx.list(objects_pb2.Service):
            if self.serves(service):
                self.agenda.add(ServiceWork(service.id))
        for task in tx.list(objects_pb2.Task):
            work = ServiceWork(task.service_id)
            if (
                self.owns(task)
                and work not in self.agenda
                and tx.get(objects_pb2.Service, task.service_id) is None
            ):
                self.agenda.add(work)

    def observe(self, event: Event) -> None:
        obj = event.object
        if isinstance(obj, objects_pb2.Service):
            self._observe_service(event)
        elif isinstance(obj, objects_pb2.Task):
            if self.owns(obj):
                self._observe_task(event)
        elif isinstance(obj, objects_pb2.Node):
            old, new = event.old, event.new
            assert old is None or isinstance(old, objects_pb2.Node)
            assert new is None or isinstance(new, objects_pb2.Node)
            self.node_changed(obj.id, old, new)

    def _observe_service(self, event: Event) -> None:
        old, new = event.old, event.new
        assert old is None or isinstance(old, objects_pb2.Service)
        assert new is None or isinstance(new, objects_pb2.Service)
        if not any(self.serves(s) for s in (old, new) if s is not None):
            return
        if old is None or (new is not None and spec_changed(old, new)):
            self._revive.add(event.object.id)
        self.agenda.add(ServiceWork(event.object.id))

    def _observe_task(self, event: Event) -> None:
        old, new = event.old, event.new
        assert old is None or isinstance(old, objects_pb2.Task)
        assert new is None or isinstance(new, objects_pb2.Task)
        if event.action is EventAction.DELETE:
            assert old is not None
            if is_runnable(old):
                self._refill.add(slot_key(old))
                self.agenda.add(SlotWork(slot_key(old)))
        elif old is not None and new is not None and self.slot_changed(old, new):
            self.agenda.add(SlotWork(slot_key(new)))

    async def reconcile(self, key: Work) -> None:
        now = self.clock.now()
        if isinstance(key, ServiceWork):
            revive = key.service_id in self._revive
            more = await commit(
                self.store, lambda tx, tally: self._service(tx, tally, key.service_id, now, revive)
            )
            if more:
                self.agenda.add(key)  # the rest in the next transaction
            else:
                self._revive.discard(key.service_id)
        elif isinstance(key, SlotWork):
            await commit(self.store, lambda tx, tally: self._slot(tx, tally, key.key, now))
            self._refill.discard(key.key)
        else:
            await self.reconcile_node(key.node_id, now)

    def refilling(self, key: SlotKey) -> bool:
        """The slot's runnable task was deleted: it gets a new one (if the mode wants one)."""
        return key in self._refill

    def live_service(self, tx: ReadTx, service_id: str) -> objects_pb2.Service | None:
        """The service if it is live and of this mode."""
        service = tx.get(objects_pb2.Service, service_id)
        if service is None or not is_live(service) or not self.serves(service):
            return None
        return service

    # -- transactions -------------------------------------------------------------------

    def _service(
        self, tx: WriteTx, tally: Tally, service_id: str, now: float, revive: bool
    ) -> bool:
        """Reconcile the whole service; True when it stopped at the change limit."""
        service = self.live_service(tx, service_id)
        if service is not None:
            return self.keep_service(tx, tally, service, now, revive)
        for task in tx.find(objects_pb2.Task, "service", service_id):
            if not self.owns(task):
                continue
            if tally.total >= self.config.changes_for(task.spec):
                return True
            set_desired(tx, task, types_pb2.REMOVE, tally, "service removed")
        return False

    def _slot(self, tx: WriteTx, tally: Tally, key: SlotKey, now: float) -> None:
        service = self.live_service(tx, key.service_id)
        if service is None:
            self.agenda.add(ServiceWork(key.service_id))
            return
        self.keep_slot(tx, tally, service, key, now)
