"""Per-host politeness shared by the workers of a lake, in its PostgreSQL.

Each process keeps its own per-host gate (flows/fetch.py); workers on many
machines polling one feed list need one gate between them, or four workers
send a host four times `per_host_concurrency` requests at once. Before a
request to a host, a worker
1. takes one of the host's `per_host_concurrency` slots (`host_slots`; a
   slot of a worker that died frees itself at `held_until`), waiting while
   all are held; then
2. books the next start time (`host_turns.next_start`, moved on by
   `per_host_delay_s` in the same statement, so bookings never overlap)
   and sleeps until it;
3. right before sending, takes the host's send turn (`pending_by`), only
   if no other request is being sent and the last was sent
   `per_host_delay_s` ago or more; else it sleeps the rest and tries again;
4. once the request is written, stamps it sent (`last_start`, PostgreSQL's
   clock at that moment, so never earlier than the bytes left).
A booking alone let a worker woken late (a busy event loop, a slow answer
from PostgreSQL) send close to the next booking: between two sends to a
host, as they leave the workers, there is now always the delay. The
slot is given back when the response is read. Five short statements per
request, on one connection per worker; a turn taken by a worker that died
frees itself after 5 s.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import psycopg

from warehouse.lake import KEYED_SCHEMA

_S = KEYED_SCHEMA
_RECLAIM_AFTER_S = 2.0


class HostTurns:
    def __init__(self, dsn: str, owner: str, *, hold_s: float):
        self._dsn = dsn
        self._owner = owner
        self._hold_s = hold_s  # a slot's lease: longer than any request's total timeout
        self._pg: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._made: set[tuple[str, int]] = set()
        self.statements = 0
        self.waited_s = 0.0

    async def _execute(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        async with self._lock:
            if self._pg is None:
                self._pg = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
            self.statements += 1
            cur = await self._pg.execute(sql, params)
            return await cur.fetchall() if cur.description else []

    async def acquire(self, host: str, *, slots: int, delay_s: float) -> int:
        """Take a slot of the host and wait for its turn; returns the slot."""
        if (host, slots) not in self._made:
            await self._execute(f"INSERT INTO {_S}.host_slots (host, slot) SELECT %s, g FROM generate_series(0, %s) g "
                                "ON CONFLICT DO NOTHING", [host, slots - 1])
            self._made.add((host, slots))
        pause, waited = 0.01, 0.0
        while True:
            rows = await self._execute(f"""
                UPDATE {_S}.host_slots h SET holder = %s, held_until = clock_timestamp() + %s * interval '1 second'
                FROM (SELECT slot FROM {_S}.host_slots
                      WHERE host = %s AND slot < %s AND (holder IS NULL OR held_until < clock_timestamp())
                      ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED) free
                WHERE h.host = %s AND h.slot = free.slot RETURNING h.slot
            """, [self._owner, self._hold_s, host, slots, host])
            if rows:
                slot: int = rows[0][0]
                break
            self.waited_s += pause
            await asyncio.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 0.25)
            waited += pause
            if waited >= _RECLAIM_AFTER_S:  # all slots held a while: perhaps by a worker that died
                waited = 0.0
                from warehouse.leases import reclaim_dead

                await asyncio.to_thread(reclaim_dead, self._dsn)
        try:
            # The start booked: the later of now and the last booking, plus the gap after it.
            wait = (await self._execute(f"""
                INSERT INTO {_S}.host_turns AS t (host, next_start)
                VALUES (%s, clock_timestamp() + %s * interval '1 second')
                ON CONFLICT (host) DO UPDATE
                    SET next_start = greatest(t.next_start, clock_timestamp()) + %s * interval '1 second'
                RETURNING extract(epoch FROM t.next_start - %s * interval '1 second' - clock_timestamp())
            """, [host, delay_s, delay_s, delay_s]))[0][0]
        except BaseException:
            await self.release(host, slot)
            raise
        if wait > 0:
            self.waited_s += float(wait)
            await asyncio.sleep(float(wait))
        return slot

    async def start(self, host: str, *, delay_s: float) -> str:
        """Take the host's send turn; returns its token for `sent`."""
        token = f"{self._owner} {uuid.uuid4().hex[:12]}"
        while True:
            # The outer SELECT sees the row as it was before the UPDATE: the wait is from the last send.
            taken, wait = (await self._execute(f"""
                WITH taken AS (
                    UPDATE {_S}.host_turns SET pending_by = %s, pending_until = clock_timestamp() + interval '5 s'
                    WHERE host = %s AND (pending_until IS NULL OR pending_until < clock_timestamp())
                      AND (last_start IS NULL OR last_start <= clock_timestamp() - %s * interval '1 second')
                    RETURNING host)
                SELECT (SELECT count(*) FROM taken),
                       coalesce(extract(epoch FROM last_start + %s * interval '1 second' - clock_timestamp()), 0)
                FROM {_S}.host_turns WHERE host = %s
            """, [token, host, delay_s, delay_s, host]))[0]
            if taken:
                return token
            pause = max(float(wait), 0.002)  # another request is being sent, or was just sent: its gap first
            self.waited_s += pause
            await asyncio.sleep(pause)

    async def sent(self, host: str, token: str) -> None:
        """The request of this turn is written (or failed before): the gap runs from now."""
        await self._execute(f"UPDATE {_S}.host_turns SET last_start = clock_timestamp(), pending_by = NULL, "
                            "pending_until = NULL WHERE host = %s AND pending_by = %s", [host, token])

    async def release(self, host: str, slot: int) -> None:
        await self._execute(f"UPDATE {_S}.host_slots SET holder = NULL, held_until = NULL "
                            "WHERE host = %s AND slot = %s AND holder = %s", [host, slot, self._owner])

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
            self._pg = None
