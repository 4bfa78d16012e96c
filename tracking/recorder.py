"""Recording hits without ever slowing down or breaking the redirect and pixel.

A hit is appended to a per-process buffer and the response goes out at once. A
background thread writes the buffer to `track_event` in one multi-row INSERT
every `TRACKING_FLUSH_SECONDS` (0.2 s), and once more when the process exits
normally (gunicorn's graceful stop or restart of a worker: SIGTERM, SIGHUP,
`max_requests`). If the database is down or locked the rows stay in the buffer
and the thread tries again with a growing pause (up to 5 s); the redirect and
pixel never wait for it.

Loss bound: a worker killed without a graceful exit (SIGKILL, OOM, power loss)
loses the hits of its unflushed buffer, normally those of the last 0.2 s; during
a database outage, the hits since the outage began. The buffer holds at most
`TRACKING_BUFFER_MAX` hits (100,000); past that, new hits are counted as
dropped and logged, never kept at the cost of the process's memory. A hit whose
campaign was deleted meanwhile is discarded. On SQLite the hits' commits don't
wait for the disk (see `_insert_sqlite`): a power loss can also take the last
second of written hits.

The thread is started by the first hit in each process (a thread does not
survive gunicorn's fork) and stops after a minute without hits.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from campaigns.models import Campaign
from tracking.models import TrackEvent

log = logging.getLogger("klubpost.tracking")

# A hit as the endpoints hand it over: the `track_event` columns, in this order
# (kind as its string value, occurred_at an aware UTC datetime).
HIT_COLUMNS = (
    "campaign_id",
    "send_id",
    "link_id",
    "kind",
    "occurred_at",
    "human",
    "reason",
)
Hit = tuple[int, int | None, int | None, str, datetime, bool, str]

IDLE_STOP_SECONDS = 60
MAX_PAUSE_SECONDS = 5.0
EXIT_FLUSH_SECONDS = 10.0


class Recorder:
    """A bounded buffer of hits and the thread that writes them in batches."""

    def __init__(
        self, engine: Engine, *, interval: float = 0.2, max_buffer: int = 100_000
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.max_buffer = max_buffer
        self.recorded = 0
        self.dropped = 0
        self._buffer: deque[Hit] = deque()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = self._made_in = os.getpid()
        atexit.register(self.close)
        self._wake = threading.Event()
        self._closing = False
        self._sql: str | None = None
        self._time: Any = None

    def record(self, row: Hit) -> None:
        """Keep one hit (see HIT_COLUMNS) for the next flush; never blocks."""
        if self._pid != os.getpid() or self._thread is None:
            self._start()
        if len(self._buffer) >= self.max_buffer:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("tracking buffer full: %d hits dropped", self.dropped)
            return
        self._buffer.append(row)

    def pending(self) -> int:
        """How many hits wait for the next flush."""
        return len(self._buffer)

    def flush(self) -> int:
        """Write the buffered hits now; returns how many were written.

        Raises the database's error if it is unavailable (the rows stay buffered).
        """
        with self._flush_lock:
            rows = self._take()
            if not rows:
                return 0
            try:
                written = self._write(rows)
            except BaseException:
                self._buffer.extendleft(reversed(rows))  # keep their order
                raise
            self.recorded += written
            return written

    def close(self) -> None:
        """Stop the thread and write what is left (at process exit)."""
        self._closing = True
        self._wake.set()
        deadline = time.monotonic() + EXIT_FLUSH_SECONDS
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(EXIT_FLUSH_SECONDS)  # let a flush under way finish
        while self._buffer and time.monotonic() < deadline:
            try:
                self.flush()
            except Exception as exc:  # the database is away: a few more tries
                log.warning("tracking flush at exit failed, retrying: %s", exc)
                time.sleep(0.5)
        if self._buffer:
            log.error("tracking: %d hits lost at exit", len(self._buffer))

    # -------------------------------------------------------------- internals

    def _start(self) -> None:
        with self._flush_lock:
            if self._pid == os.getpid() and self._thread is not None:
                return
            if self._pid != os.getpid():
                # Forked: the parent's pooled connections are not ours to use,
                # nor its buffered hits (the parent writes those).
                self.engine.dispose(close=False)
                self._pid = os.getpid()
                self._buffer.clear()
            self._thread = threading.Thread(
                target=self._run, name="klubpost-tracking", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        pause = self.interval
        idle_since = time.monotonic()
        while not self._closing:
            self._wake.wait(pause)
            if self._closing:
                return
            if not self._buffer:
                if time.monotonic() - idle_since > IDLE_STOP_SECONDS:
                    break
                pause = self.interval
                continue
            idle_since = time.monotonic()
            try:
                self.flush()
                pause = self.interval
            except Exception as exc:  # the database is away: keep the rows, retry
                pause = min(max(pause * 2, 0.5), MAX_PAUSE_SECONDS)
                log.warning(
                    "tracking flush failed (%d waiting): %s", self.pending(), exc
                )
        with self._flush_lock:
            self._thread = None
        if self._buffer and not self._closing:
            self._start()  # a hit arrived while the thread was stopping

    def _take(self) -> list[Hit]:
        rows = []
        buffer = self._buffer
        while buffer:
            rows.append(buffer.popleft())
        return rows

    def _write(self, rows: list[Hit]) -> int:
        try:
            self._insert(rows)
            return len(rows)
        except IntegrityError:
            pass  # a campaign was deleted since its hit: write the others
        kept = _rows_of_existing_campaigns(self.engine, rows)
        if kept:
            self._insert(kept)
        return len(kept)

    def _insert(self, rows: list[Hit]) -> None:
        """One executemany of the driver: no per-row work of SQLAlchemy's, which
        would cost more than the hit itself."""
        dialect = self.engine.dialect
        if self._sql is None:
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            self._sql = (
                f"INSERT INTO track_event ({', '.join(HIT_COLUMNS)}) "
                f"VALUES ({', '.join([mark] * len(HIT_COLUMNS))})"
            )
            column = TrackEvent.__table__.c.occurred_at
            to_db = column.type.dialect_impl(dialect).bind_processor(dialect)
            self._time = to_db or (lambda value: value)
        to_db = self._time
        params = [(c, s, lnk, k, to_db(at), h, r) for c, s, lnk, k, at, h, r in rows]
        if dialect.name == "postgresql":
            with self.engine.begin() as conn:
                _copy(conn, params)
            return
        raw = self.engine.raw_connection()
        try:
            _insert_sqlite(raw.dbapi_connection, self._sql, params)
        finally:
            raw.close()  # back to the pool


def _insert_sqlite(connection: sqlite3.Connection, sql: str, params: list) -> None:
    """One transaction of INSERTs, committed without waiting for the disk.

    In WAL mode `synchronous=NORMAL` keeps the database consistent and loses
    nothing when a process dies; only a power loss or an operating system crash
    can take the last commits with it. For hits that is the same kind of bound
    as the buffer's (see above), and the flush does not make the disk flush ten
    times a second. The connection is handed back as it came (FULL).
    """
    connection.execute("PRAGMA synchronous=NORMAL")
    try:
        with connection:  # BEGIN ... COMMIT, or ROLLBACK on an error
            connection.executemany(sql, params)
    except sqlite3.IntegrityError as exc:
        raise IntegrityError("INSERT INTO track_event", None, exc) from exc
    finally:
        connection.execute("PRAGMA synchronous=FULL")


def _copy(conn: Connection, params: list[tuple]) -> None:
    """COPY the rows: for the server several times cheaper than INSERTs, and the
    server shares the machine with the workers answering the hits."""
    import psycopg

    cursor = conn.connection.dbapi_connection.cursor()
    try:
        with cursor.copy(
            f"COPY track_event ({', '.join(HIT_COLUMNS)}) FROM STDIN"
        ) as copy:
            for row in params:
                copy.write_row(row)
    except psycopg.errors.IntegrityError as exc:
        raise IntegrityError("COPY track_event", None, exc) from exc
    finally:
        cursor.close()


def _rows_of_existing_campaigns(engine: Engine, rows: list[Hit]) -> list[Hit]:
    ids = {row[0] for row in rows}
    with engine.connect() as conn:
        existing = set(
            conn.scalars(select(Campaign.id).where(Campaign.id.in_(ids))).all()
        )
    return [row for row in rows if row[0] in existing]
