"""What the benchmarks share: their own library and debate club, made and gone."""

from __future__ import annotations

import socket
import sys
from typing import Any

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
