"""The per-host gate that workers of a lake share (warehouse/host_turns.py),
driven directly: two workers (two PostgreSQL connections) and many
requests at once never hold more than `slots` of a host, and their stamped
starts are never closer than the delay."""

from __future__ import annotations

import asyncio
import time

import pytest

from warehouse.host_turns import HostTurns
from warehouse.target import parse_target

pytestmark = pytest.mark.slow


def test_two_workers_share_slots_and_gaps(make_lake):
    dsn = parse_target(make_lake("turns")).dsn
    slots, delay = 2, 0.05
    held, most, starts = 0, 0, []

    async def request(turns: HostTurns, host: str) -> None:
        nonlocal held, most
        slot = await turns.acquire(host, slots=slots, delay_s=delay)
        held += 1
        most = max(most, held)
        try:
            token = await turns.start(host, delay_s=delay)
            starts.append((host, time.monotonic()))
            await turns.sent(host, token)
            await asyncio.sleep(0.08)  # longer than the delay: slots, not only turns, limit it
        finally:
            held -= 1
            await turns.release(host, slot)

    async def main():
        workers = [HostTurns(dsn, f"w{i}", hold_s=60) for i in range(2)]
        try:
            await asyncio.gather(*(request(workers[i % 2], "a.example") for i in range(16)),
                                 *(request(workers[i % 2], "b.example") for i in range(4)))
        finally:
            for w in workers:
                await w.close()
        return workers

    workers = asyncio.run(main())
    assert most <= slots * 2  # two hosts
    gaps = []
    for host in ("a.example", "b.example"):
        times = sorted(t for h, t in starts if h == host)
        gaps += [b - a for a, b in zip(times, times[1:])]
    assert len(starts) == 20 and min(gaps) >= delay - 0.005, sorted(gaps)[:3]
    assert sum(w.statements for w in workers) >= 20 * 5


def _wait_behind_a_dead_holder(dsn: str, owner: str, hold_s: float) -> float:
    """A worker `owner` took both slots of a host and never gave them back;
    how long another then waits for one."""
    async def main():
        dead = HostTurns(dsn, owner, hold_s=hold_s)
        await dead.acquire("h.example", slots=2, delay_s=0)
        await dead.acquire("h.example", slots=2, delay_s=0)
        await dead.close()
        live = HostTurns(dsn, "live run-2", hold_s=60)
        clock = time.monotonic()
        slot = await live.acquire("h.example", slots=2, delay_s=0)
        waited = time.monotonic() - clock
        await live.release("h.example", slot)
        await live.close()
        return waited

    return asyncio.run(main())


def test_a_slot_of_a_dead_worker_frees_itself(make_lake):
    waited = _wait_behind_a_dead_holder(parse_target(make_lake("turns")).dsn, "dead", hold_s=0.5)
    assert 0.3 <= waited < 5  # its hold ran out


def test_a_waiting_worker_frees_the_slots_of_a_dead_run_before_they_expire(make_lake):
    """Owners are '<worker> <run id>'; a run whose PostgreSQL lock is free is
    dead (warehouse/twophase.py): its slots are freed without waiting out
    the hold."""
    waited = _wait_behind_a_dead_holder(parse_target(make_lake("turns")).dsn, "crashed 3f2a-run-that-holds-no-lock",
                                        hold_s=600)
    assert 1.5 <= waited < 20  # about _RECLAIM_AFTER_S, not the 600 s hold
