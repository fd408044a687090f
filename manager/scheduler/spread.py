"""The spread strategy: place one group's tasks on the nodes its filters admit.

Without preferences the nodes form one leaf: each task goes to the admitted node with the
fewest active tasks of the service, then the fewest active tasks overall, then the smallest
id; a node where this service (at this spec version) failed MAX_FAILURES times recently goes
last. A heap keeps that order, so placing G tasks on N nodes costs O(N + G log N).

Placement preferences (`spread=node.labels.zone`, ...) make a tree: every level splits the
nodes by one attribute's value (nodes without it share the "" branch). At each level the tasks
are split so that the branches' counts of the service's tasks come out as even as possible
(water filling, counting the tasks already there); a branch that cannot take its share is
closed and its remainder goes to the others.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from manager.scheduler.filters import FilterRun
from manager.scheduler.node_info import NodeInfo
from manager.scheduler.requirements import TaskRequirements

# (failure penalty, active tasks of the service, active tasks, rank in the candidates)
HeapEntry = tuple[int, int, int, int]


class _Branch:
    __slots__ = ("children", "heap", "open", "ordered", "tasks")

    def __init__(self) -> None:
        # Active tasks of the service on this branch's nodes (admitted or not).
        self.tasks = 0
        self.children: dict[str, _Branch] = {}
        # Children by value, filled in once the tree is built; empty for a leaf.
        self.ordered: list[_Branch] = []
        # Admitted nodes of a leaf.
        self.heap: list[HeapEntry] = []
        # Whether the branch may still take tasks.
        self.open = False


def water_fill(counts: Sequence[int], n: int) -> list[int]:
    """Split n among branches holding `counts` so the smallest totals rise evenly.

    Branches end within one of each other where they receive anything; the extra units of
    an uneven split go to the earliest branches.
    """
    order = sorted(range(len(counts)), key=lambda i: (counts[i], i))
    level, width, left = counts[order[0]], 1, n
    while True:
        while width < len(order) and counts[order[width]] <= level:
            width += 1
        if width < len(order) and (counts[order[width]] - level) * width <= left:
            left -= (counts[order[width]] - level) * width
            level = counts[order[width]]
            continue
        raise_by, extra = divmod(left, width)
        shares = [0] * len(counts)
        for position, i in enumerate(sorted(order[:width])):
            shares[i] = level + raise_by - counts[i] + (1 if position < extra else 0)
        return shares


class _Placer:
    def __init__(
        self,
        run: FilterRun,
        req: TaskRequirements,
        candidates: Sequence[NodeInfo],
        task_ids: Sequence[str],
    ) -> None:
        self._run = run
        self._req = req
        self._candidates = candidates
        self._task_ids = task_ids
        self._next = 0
        self.placed: list[tuple[str, NodeInfo]] = []

    def build(self, now: float) -> _Branch:
        service = self._req.usage.service_id
        failure_key = (service, self._req.usage.spec_version)
        spreads = self._req.spreads
        admits = self._run.admits
        root = _Branch()
        for rank, info in enumerate(self._candidates):
            tasks = info.active_by_service.get(service, 0)
            branch = root
            if spreads and info.attributes is not None:
                for spread in spreads:
                    branch.tasks += tasks
                    value = spread.value_of(info.attributes)
                    child = branch.children.get(value)
                    if child is None:
                        child = branch.children[value] = _Branch()
                    branch = child
            branch.tasks += tasks
            if admits(info):
                penalty = info.failure_penalty(failure_key, now)
                branch.heap.append((penalty, tasks, info.active_tasks, rank))
        _finish(root)
        return root

    def fill(self, branch: _Branch, n: int) -> int:
        """Place up to n tasks under `branch`; return how many were placed."""
        if not branch.ordered:
            got = self._fill_leaf(branch, n)
        else:
            got = 0
            children = [child for child in branch.ordered if child.open]
            while got < n and children:
                shares = water_fill([child.tasks for child in children], n - got)
                for child, share in zip(children, shares, strict=True):
                    if share:
                        got += self.fill(child, share)
                children = [child for child in children if child.open]
            branch.tasks += got
        if got < n:
            branch.open = False
        return got

    def _fill_leaf(self, leaf: _Branch, n: int) -> int:
        heap, candidates, task_ids = leaf.heap, self._candidates, self._task_ids
        usage, still_admits, placed = self._req.usage, self._run.still_admits, self.placed
        start = self._next
        got = 0
        while got < n and heap:
            penalty, tasks, total, rank = heap[0]
            info = candidates[rank]
            task_id = task_ids[start + got]
            info.add_task(task_id, usage)
            placed.append((task_id, info))
            got += 1
            if still_admits(info):
                heapq.heapreplace(heap, (penalty, tasks + 1, total + 1, rank))
            else:
                heapq.heappop(heap)
        self._next = start + got
        leaf.tasks += got
        if not heap:
            leaf.open = False
        return got


def _finish(branch: _Branch) -> None:
    """Order the children, heapify the leaves and mark which branches can take tasks."""
    if branch.children:
        branch.ordered = [branch.children[value] for value in sorted(branch.children)]
        for child in branch.ordered:
            _finish(child)
        branch.open = any(child.open for child in branch.ordered)
    else:
        heapq.heapify(branch.heap)
        branch.open = bool(branch.heap)


def spread(
    run: FilterRun,
    req: TaskRequirements,
    candidates: Sequence[NodeInfo],
    task_ids: Sequence[str],
    now: float,
) -> list[tuple[str, NodeInfo]]:
    """Place `task_ids` (in order) on `candidates`; return (task id, node) for those placed.

    The nodes' infos are updated as tasks are placed; `run` counts the nodes it rejected.
    """
    placer = _Placer(run, req, candidates, task_ids)
    root = placer.build(now)
    placer.fill(root, len(task_ids))
    return placer.placed
