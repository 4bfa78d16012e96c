"""What the benchmarks share: their own library and debate club, made and gone."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text

from accounts.models import Library
from klubpost.db import db
from subscribers.models import Club
from subscribers.services import create_club


def bench_club(bench: str, tag: str, **club: Any) -> Club:
    """A library of its own for one run of a benchmark, with a debate club
    (`club` overrides the club's settings). Deleting the library removes all."""
    session = db.session
    library = Library(
        name=f"Bench {tag}", slug=f"bench-{bench}-{tag}", domain="bench.example.dk"
    )
    session.add(library)
    session.flush()
    settings = {
        "name": "Her er debat",
        "slug": "debat",
        "language": "da",
        "from_name": "Her er debat",
        "from_email": "debat@bench.example.dk",
        "reply_to": None,
        "double_opt_in": True,
        **club,
    }
    return create_club(session, library, **settings)


def log(message: str) -> None:
    """Progress goes to stderr; stdout's last line is the JSON result."""
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) a local process has used; with `children`,
    also those of its children that have exited. 0.0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(stat[11]) + int(stat[12])
    if children:
        ticks += int(stat[13]) + int(stat[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def database_server_cpu() -> float | None:
    """CPU seconds the local PostgreSQL server has used so far, all its processes
    (backends that have exited included, through the postmaster's children
    times); None for SQLite or a server on another machine. Two readings
    around a phase give the server's share of the machine in it."""
    if db.engine.dialect.name != "postgresql":
        return None
    with db.engine.connect() as connection:
        backend = connection.scalar(text("SELECT pg_backend_pid()"))
    try:
        stat = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    postmaster = int(stat[1])
    total = process_cpu(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
            if int(parent) == postmaster:
                total += process_cpu(int(entry.name))
    return total
