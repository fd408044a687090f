"""Errors of the allocator; each message names the object and the problem."""

from __future__ import annotations


class AllocationError(Exception):
    """A network, service or task cannot be allocated (bad spec, conflict, pool exhausted).

    The object stays unallocated, and is tried again when something it depends on changes.
    """
