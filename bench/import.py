"""Benchmark: import 100,000 generated subscribers from CSV into a club.

Goes through the real job path (the upload is checked and stored, then
`run_pending_imports` processes it) and, in the same run, a naive baseline that
adds people one by one with the ORM (`create_subscriber` + `join_club`).

    python bench/import.py                          # a temporary SQLite file
    python bench/import.py --database-url postgresql://postgres@127.0.0.1:5432/db

The database is migrated first (an empty one gets the whole schema); the run
adds its own library and deletes it again at the end. The last line printed is
one JSON object: {"rows": ..., "rows_per_s": ..., "naive_rows_per_s": ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import delete, func, select, text  # noqa: E402

from accounts.models import Library  # noqa: E402
from klubpost import create_app  # noqa: E402
from klubpost.db import db  # noqa: E402
from subscribers.imports import create_job, queue_job, run_pending_imports  # noqa: E402
from subscribers.models import ImportStatus, Membership  # noqa: E402
from subscribers.services import create_club, create_subscriber, join_club  # noqa: E402

FIRST = ["Anna", "Bo", "Carla", "Dirk", "Emma", "Frederik", "Greta", "Hans", "Ida"]
LAST = ["Jensen", "de Vries", "Nielsen", "Bakker", "Hansen", "Visser", "Sørensen"]
BRANCHES = ["Lindholm", "Vejgaard", "Centrum", "Overvecht", "Leidsche Rijn"]
DOMAINS = [f"mail{n}.example.{tld}" for n in range(40) for tld in ("dk", "nl")] + [
    "gmail.com",
    "hotmail.com",
    "outlook.dk",
    "ziggo.nl",
]


def members_csv(rows: int, prefix: str, seed: int = 1) -> bytes:
    """A members file as an editor would upload it (UTF-8, semicolons)."""
    rng = random.Random(seed)
    lines = ["email;first name;last name;language;children;branch"]
    for n in range(rows):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        domain = rng.choice(DOMAINS)
        ages = ", ".join(str(rng.randint(1, 14)) for _ in range(rng.randint(0, 3)))
        lines.append(
            f"{first.lower()}.{prefix}{n}@{domain};{first};{last};"
            f"{rng.choice(['da', 'nl', 'en'])};{ages};{rng.choice(BRANCHES)}"
        )
    return ("\r\n".join(lines) + "\r\n").encode()


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--naive-rows", type=int, default=5_000)
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench", "ENV": "bench"})
    with app.app_context():
        upgrade()
        result = run(args.rows, args.naive_rows)
        result["database"] = db.engine.dialect.name
    print(json.dumps(result))


def run(rows: int, naive_rows: int) -> dict:
    """Time the job path on `rows` rows and the naive path on `naive_rows`."""
    session = db.session
    tag = uuid.uuid4().hex[:8]
    library = Library(
        name=f"Bench {tag}", slug=f"bench-{tag}", domain="bench.example.dk"
    )
    session.add(library)
    session.flush()
    club = _club(library, "import")
    naive_club = _club(library, "naive")
    session.commit()
    content = members_csv(rows, tag)
    print(f"{len(content) / 1e6:.1f} MB, {rows} rows", file=sys.stderr)
    try:
        backend = _backend_cpu(session)
        started, cpu_started = time.perf_counter(), time.process_time()
        job = create_job(session, club, filename="members.csv", content=content)
        queue_job(session, job, job.mapping["roles"], consent_given=True)
        session.commit()
        uploaded = time.perf_counter()
        run_pending_imports(session)
        finished, cpu_finished = time.perf_counter(), time.process_time()
        if backend is not None:
            backend = _backend_cpu(session, backend)
        session.refresh(job)
        assert job.status == ImportStatus.DONE, job.error
        members = session.scalar(
            select(func.count()).where(Membership.club_id == club.id)
        )
        assert members == rows, (members, job.counts)

        naive_seconds = _naive(library, naive_club, members_csv(naive_rows, "n" + tag))
    finally:
        session.rollback()
        session.execute(delete(Library).where(Library.id == library.id))
        session.commit()
    total = finished - started
    result = {
        "rows": rows,
        "rows_per_s": round(rows / total),
        "naive_rows_per_s": round(naive_rows / naive_seconds),
        "seconds": round(total, 2),
        "upload_check_seconds": round(uploaded - started, 2),
        "run_seconds": round(finished - uploaded, 2),
        # On a busy machine wall time says little; this process's CPU time helps.
        "cpu_seconds": round(cpu_finished - cpu_started, 2),
        "load_average": round(os.getloadavg()[0], 1),
    }
    if backend is not None:
        result["db_server_cpu_seconds"] = round(backend, 2)
    return result


def _backend_cpu(session, before: dict | None = None) -> dict | float | None:
    """CPU seconds of the PostgreSQL server processes serving this database.

    The import writes on two connections, so every client backend connected
    to the database counts (the run keeps its connections in the pool until
    the second reading). Only when the server runs on this machine (/proc):
    the first call returns a reading per process, the second the seconds
    used since.
    """
    if db.engine.dialect.name != "postgresql":
        return None
    pids = session.scalars(
        text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend'"
        )
    ).all()
    reading = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        reading[pid] = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    if before is None:
        return reading
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in reading.items())


def _club(library: Library, slug: str):
    return create_club(
        db.session,
        library,
        name=f"Bench {slug}",
        slug=slug,
        language="da",
        from_name="Bench",
        from_email="bench@bench.example.dk",
        double_opt_in=True,
    )


def _naive(library: Library, club, content: bytes) -> float:
    """One person at a time through the ORM services, one commit at the end."""
    lines = content.decode().splitlines()[1:]
    started = time.perf_counter()
    for line in lines:
        email, first, last, language, children, branch = line.split(";")
        subscriber = create_subscriber(
            db.session,
            library,
            email,
            first_name=first,
            last_name=last,
            language=language,
            attributes={"children": children, "branch": branch},
        )
        join_club(db.session, club, subscriber, source="bench", consent_given=True)
    db.session.commit()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
