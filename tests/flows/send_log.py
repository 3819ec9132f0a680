"""Every send a lake's workers stamp in `host_turns` (warehouse/host_turns.py),
kept by a trigger the test or benchmark adds: the gaps the workers kept,
as PostgreSQL's clock saw them, beside those a server measured."""

from __future__ import annotations

import psycopg

from warehouse.lake import KEYED_SCHEMA


def log_sends(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute(f"""
            CREATE TABLE IF NOT EXISTS public.sends (host text, at timestamptz);
            CREATE OR REPLACE FUNCTION public.log_send() RETURNS trigger AS $$
            BEGIN INSERT INTO public.sends VALUES (NEW.host, NEW.last_start); RETURN NEW; END $$ LANGUAGE plpgsql;
            CREATE OR REPLACE TRIGGER log_send AFTER UPDATE OF last_start ON {KEYED_SCHEMA}.host_turns
                FOR EACH ROW WHEN (NEW.last_start IS DISTINCT FROM OLD.last_start) EXECUTE FUNCTION public.log_send();
        """)


def shortest_send_gap(dsn: str) -> tuple[int, float]:
    """(sends, the shortest gap in seconds between two sends to one host)."""
    with psycopg.connect(dsn, autocommit=True) as pg:
        return pg.execute("""
            SELECT count(*), coalesce(min(gap), 'infinity'::float8) FROM (
                SELECT extract(epoch FROM at - lag(at) OVER (PARTITION BY host ORDER BY at))::float8 AS gap
                FROM public.sends) g
        """).fetchone()
