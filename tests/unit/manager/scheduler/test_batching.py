from __future__ import annotations

import re

import pytest

from manager.scheduler import SchedulerError
from manager.scheduler.batching import DEBOUNCE_S, MAX_DELAY_S, Debouncer


def test_swarmkits_numbers() -> None:
    assert (DEBOUNCE_S, MAX_DELAY_S) == (0.05, 1.0)


def test_a_change_after_a_quiet_spell_is_due_at_once() -> None:
    batch = Debouncer(gap=0.25, max_delay=1.0)
    assert batch.due_at() is None
    assert not batch.is_due(10.0)
    batch.changed(10.0)
    assert batch.due_at() == 10.0
    assert batch.is_due(10.0)
    batch.changed(10.0)  # more of the same moment: still one batch, still due
    assert batch.due_at() == 10.0
    batch.reset(10.0)
    assert batch.due_at() is None
    batch.changed(10.25)  # a gap after the batch ran: quiet enough
    assert batch.due_at() == 10.25


def test_a_burst_waits_for_the_gap_or_the_cap() -> None:
    batch = Debouncer(gap=0.25, max_delay=1.0)
    batch.changed(10.0)
    batch.reset(10.0)  # the leading batch
    batch.changed(10.1)  # within the gap after it: a burst
    assert batch.due_at() == pytest.approx(10.35)
    batch.changed(10.5)
    assert batch.due_at() == 10.75
    assert not batch.is_due(10.74)
    assert batch.is_due(10.75)
    batch.changed(10.875)
    assert batch.due_at() == pytest.approx(11.1)  # capped: the burst's first change was 10.1
    batch.reset(11.1)
    batch.changed(11.2)
    assert batch.due_at() == pytest.approx(11.45)  # the burst goes on
    batch.reset(11.45)
    batch.changed(20.0)
    assert batch.due_at() == 20.0  # over: leading again


@pytest.mark.parametrize(("gap", "max_delay"), [(-0.1, 1.0), (2.0, 1.0)])
def test_invalid_timing_is_refused(gap: float, max_delay: float) -> None:
    with pytest.raises(SchedulerError, match=re.escape(f"gap={gap} max_delay={max_delay}")):
        Debouncer(gap, max_delay)
