"""Benchmark: the click redirect and the open pixel under gunicorn, loaded by wrk.

    .venv/bin/python bench/track.py                       # temporary SQLite, 20 s
    .venv/bin/python bench/track.py --seconds 5           # a quick look
    .venv/bin/python bench/track.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/klubpost_bench

The database is migrated first; the run adds its own library, a club that tracks
individually, a campaign with ten tracked links sent to `--members` members
(send-log rows written directly), and deletes the library again at the end.

Two phases under the same gunicorn settings (`--workers`, default 2 sync
workers, on a free loopback port), each loaded by `wrk` (Debian package) with
`--connections` (32) connections on two threads for `--seconds` (20) with
`--latency`; a Lua script rotates over `--tokens` (5,000) different request
paths, clicks and pixels mixed one to one:

1. the service itself (`wsgi:app`, KLUBPOST_ENV=production); after wrk ends,
   gunicorn is stopped gracefully (SIGTERM: each worker writes what its
   recorder still holds) and the raw events of the campaign are counted;
2. a bare WSGI app that answers every request with the same 43-byte GIF.

The last line printed is one JSON object:

- `rps`, `bare_rps`: requests per second wrk measured against each; `ratio`:
  rps / bare_rps (target >= 0.8).
- `p99_ms`: the service's 99th percentile latency (target <= 25); `bare_p99_ms`.
- `requests`: the service's successful answers (wrk's count less non-2xx/3xx);
  `recorded`: raw events written; `lost`: successful answers without an event
  (target 0). `unanswered_recorded`: events whose answer wrk did not count
  because it stopped while they were in flight (at most one per connection).
- the database kind, gunicorn settings, and the load average before and after
  (the machine is shared: figures move with it).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import Integer, delete, func, insert, literal, select  # noqa: E402

from accounts.models import Library  # noqa: E402
from bench.common import bench_club, free_port, log  # noqa: E402
from campaigns.models import (  # noqa: E402
    Campaign,
    CampaignKind,
    CampaignStatus,
    SendLog,
    SendStatus,
)
from klubpost import create_app  # noqa: E402
from klubpost.db import db, utcnow  # noqa: E402
from subscribers.models import Membership, MembershipStatus, Subscriber  # noqa: E402
from tracking.models import TrackedLink, TrackEvent, TrackingMode  # noqa: E402
from tracking.tokens import TokenSigner  # noqa: E402

SECRET = "bench-track-secret"
LINKS = 10
WRK = "/usr/bin/wrk"
LUA = r"""
local paths = {}
for line in io.lines(os.getenv("TRACK_PATHS")) do paths[#paths + 1] = line end
local counter = 0
function setup(thread)
  thread:set("offset", counter * 7919)
  counter = counter + 1
end
function init(args)
  n = offset
end
function request()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1], {["User-Agent"] =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"})
end
"""
BARE_APP = """
GIF = bytes.fromhex("{gif}")
HEADERS = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(GIF))),
    ("Cache-Control", "no-store, max-age=0"),
]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [GIF]
"""


# ------------------------------------------------------------------ data


def populate(members: int, tag: str) -> tuple[int, int, list[int], list[int]]:
    """A library, an individually tracking club, its members and a sent campaign.

    Returns (library id, campaign id, tracked link ids, send-log ids).
    """
    session = db.session
    club = bench_club("track", tag, tracking_consent_required=False)
    library = club.library
    club.tracking_mode = TrackingMode.INDIVIDUAL
    now = utcnow()
    session.execute(
        insert(Subscriber),
        [
            {
                "library_id": library.id,
                "email": f"m{n}.{tag}@bench.example.dk",
                "email_key": f"m{n}.{tag}@bench.example.dk",
                "first_name": "Medlem",
                "last_name": str(n),
                "language": "da",
                "attributes": {},
                "created_at": now,
                "updated_at": now,
            }
            for n in range(members)
        ],
    )
    at = Membership.__table__.c
    subscribers = select(
        Subscriber.id,
        literal(club.id, Integer),
        literal(MembershipStatus.CONFIRMED.value, at.status.type),
        literal("bench", at.consent_source.type),
        literal(now, at.submitted_at.type),
        literal(now, at.confirmed_at.type),
        literal(now, at.updated_at.type),
    ).where(Subscriber.library_id == library.id)
    session.execute(
        insert(Membership).from_select(
            [
                "subscriber_id",
                "club_id",
                "status",
                "consent_source",
                "submitted_at",
                "confirmed_at",
                "updated_at",
            ],
            subscribers,
        )
    )
    campaign = Campaign(
        library_id=library.id,
        club_id=club.id,
        kind=CampaignKind.REGULAR,
        subject="Bench",
        template_key="regular-da",
        blocks=[],
        status=CampaignStatus.SENT,
        started_at=now,
        sent_at=now,
    )
    session.add(campaign)
    session.flush()
    links = [
        TrackedLink(
            campaign_id=campaign.id,
            position=n + 1,
            url=f"https://bibliotek.example.dk/bog/{n}?utm_source=klubpost",
            label=f"Bog {n}",
            tag="book",
        )
        for n in range(LINKS)
    ]
    session.add_all(links)
    log_columns = SendLog.__table__.c
    sent = select(
        literal(campaign.id, Integer),
        Membership.subscriber_id,
        Membership.id,
        literal(SendStatus.SENT.value, log_columns.status.type),
        literal(True, log_columns.tracked.type),
        literal(now, log_columns.sent_at.type),
    ).where(Membership.club_id == club.id)
    session.execute(
        insert(SendLog).from_select(
            [
                "campaign_id",
                "subscriber_id",
                "membership_id",
                "status",
                "tracked",
                "sent_at",
            ],
            sent,
        )
    )
    session.commit()
    send_ids = session.scalars(
        select(SendLog.id).where(SendLog.campaign_id == campaign.id)
    ).all()
    return library.id, campaign.id, [link.id for link in links], list(send_ids)


def write_paths(
    path: Path, campaign_id: int, links: list[int], sends: list[int], count: int
) -> None:
    """Request paths for wrk: clicks and pixels of random members, one to one."""
    signer = TokenSigner({"SECRET_KEY": SECRET})
    rng = random.Random(5)
    lines = []
    for n in range(count):
        send = rng.choice(sends)
        if n % 2:
            lines.append(f"/o/{signer.open(campaign_id, send)}.gif")
        else:
            lines.append(f"/c/{signer.click(rng.choice(links), send)}")
    path.write_text("\n".join(lines) + "\n")


def write_warm_up(path: Path, campaign_id: int, links: list[int]) -> None:
    """Anonymous hits on every link and the pixel: each worker caches the links
    (they are counted apart from wrk's requests, as hits without a member)."""
    signer = TokenSigner({"SECRET_KEY": SECRET})
    lines = [f"/c/{signer.click(link, None)}" for link in links]
    lines.append(f"/o/{signer.open(campaign_id, None)}.gif")
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ load


class Gunicorn:
    """gunicorn serving `app` on a free loopback port, stopped gracefully."""

    def __init__(
        self, app: str, env: dict, args: argparse.Namespace, cwd: str, warm: list
    ):
        self.port = free_port()
        command = [
            str(Path(sys.executable).parent / "gunicorn"),
            "--workers",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            "--threads",
            str(args.threads),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--backlog",
            "2048",
            "--log-level",
            "warning",
            app,
        ]
        self.process = subprocess.Popen(command, env=env, cwd=cwd)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.1)
        self.warm_up(warm, args.workers)

    def warm_up(self, paths: list[str], workers: int) -> None:
        """Until every worker has booted and answered: wrk measures the steady state."""
        deadline = time.monotonic() + 60
        answered = 0
        while answered < 50 * workers and time.monotonic() < deadline:
            for path in paths:
                with contextlib.suppress(OSError):
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    conn.request("GET", path, headers={"User-Agent": "bench warm-up"})
                    conn.getresponse().read()
                    conn.close()
                    answered += 1

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM: workers finish their requests and exit cleanly."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def run_wrk(url: str, args: argparse.Namespace, script: Path, paths: Path) -> dict:
    """Load `url` with wrk; requests/s, p99 and the successful requests."""
    command = [
        WRK,
        "-t2",
        f"-c{args.connections}",
        f"-d{args.seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    env = dict(os.environ, TRACK_PATHS=str(paths))
    output = subprocess.run(
        command, env=env, capture_output=True, text=True, check=True
    ).stdout
    log(output)
    total = int(re.search(r"(\d+) requests in", output).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", output).group(1)),
        "requests": total - (int(bad.group(1)) if bad else 0),
        "socket_errors": errors.group(1).strip() if errors else None,
    }


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(\w+)", value).groups()
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]
    return round(float(number) * factor, 2)


def service_phase(url: str, args, workdir: Path, campaign_id: int) -> dict:
    """wrk against the service; then count what was recorded."""
    env = dict(
        os.environ,
        KLUBPOST_ENV="production",
        SECRET_KEY=SECRET,
        DATABASE_URL=url,
        BASE_URL="http://127.0.0.1",
    )
    warm = (workdir / "warm").read_text().split()
    server = Gunicorn("wsgi:app", env, args, str(ROOT), warm)
    try:
        result = run_wrk(server.url, args, workdir / "rotate.lua", workdir / "paths")
    finally:
        server.stop()
    recorded = db.session.scalar(
        select(func.count())
        .select_from(TrackEvent)
        .where(TrackEvent.campaign_id == campaign_id, TrackEvent.send_id.is_not(None))
    )
    db.session.commit()
    result["recorded"] = recorded
    result["lost"] = max(0, result["requests"] - recorded)
    result["unanswered_recorded"] = max(0, recorded - result["requests"])
    return result


def bare_phase(args, workdir: Path) -> dict:
    """wrk against a bare WSGI app returning the same GIF."""
    from tracking.public import PIXEL

    (workdir / "bare_gif.py").write_text(BARE_APP.format(gif=PIXEL.hex()))
    warm = (workdir / "warm").read_text().split()
    server = Gunicorn("bare_gif:app", dict(os.environ), args, str(workdir), warm)
    try:
        result = run_wrk(server.url, args, workdir / "rotate.lua", workdir / "paths")
    finally:
        server.stop()
    return {"bare_rps": result["rps"], "bare_p99_ms": result["p99_ms"]}


# ------------------------------------------------------------------ main


def main() -> None:
    """Run both phases and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="sync")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=5_000)
    args = parser.parse_args()
    if not os.path.exists(WRK):
        sys.exit(f"{WRK} is missing (Debian package wrk)")
    workdir = Path(tempfile.mkdtemp())
    url = args.database_url or f"sqlite:///{workdir}/bench.sqlite3"
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET, "ENV": "bench"})
    result: dict = {"load_before": os.getloadavg()[0]}
    with app.app_context():
        upgrade()
        library_id, campaign_id, links, sends = populate(
            args.members, uuid.uuid4().hex[:8]
        )
        try:
            (workdir / "rotate.lua").write_text(LUA)
            write_paths(workdir / "paths", campaign_id, links, sends, args.tokens)
            write_warm_up(workdir / "warm", campaign_id, links)
            # No transaction of ours stays open under load: on SQLite it would
            # stop the workers' WAL checkpoints, on PostgreSQL hold back vacuum.
            db.session.commit()
            result.update(service_phase(url, args, workdir, campaign_id))
            result.update(bare_phase(args, workdir))
            result["load_after"] = os.getloadavg()[0]
            result["database"] = db.engine.dialect.name
            result["gunicorn"] = (
                f"{args.workers} {args.worker_class} workers x {args.threads} threads"
            )
            print_result(result)
        finally:
            db.session.rollback()
            if args.database_url:  # a temporary file goes as a whole
                cleanup(library_id, campaign_id)
    with contextlib.suppress(OSError):
        shutil.rmtree(workdir)


def print_result(result: dict) -> None:
    """The headline figures as the last line."""
    result["ratio"] = round(result["rps"] / result["bare_rps"], 3)
    keys = ["rps", "bare_rps", "ratio", "p99_ms", "requests", "recorded", "lost"]
    ordered = {key: result[key] for key in keys}
    ordered.update({k: v for k, v in result.items() if k not in ordered})
    print(json.dumps(ordered))


def cleanup(library_id: int, campaign_id: int) -> None:
    """Delete what the run added: its events, send log, then the library."""
    for table in (TrackEvent, SendLog):
        db.session.execute(delete(table).where(table.campaign_id == campaign_id))
        db.session.commit()
    db.session.execute(delete(Library).where(Library.id == library_id))
    db.session.commit()


if __name__ == "__main__":
    main()
