"""Benchmark: send one campaign to N members through a local SMTP sink.

    .venv/bin/python bench/send.py                        # temporary SQLite, 100,000
    .venv/bin/python bench/send.py --members 1000000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/klubpost_bench

The database is migrated first (an empty one gets the whole schema); the run adds
its own library, a club with N confirmed members (bulk inserts) and a campaign
whose custom MJML is `bench/newsletter.mjml` (about 17 KB a message), and deletes
the library again at the end. Every phase sends to a fresh postfix `smtp-sink`
(`/usr/sbin/smtp-sink -c`) on a free local port, so its counters are per phase.

The last line printed is one JSON object:

- `members`: how many confirmed members the campaign goes to.
- `msgs_per_s`: the engine, as an operator runs it: `klubpost send ID` in a
  subprocess (SEND_CONNECTIONS=4, SEND_BATCH_SIZE=100, MAIL_URL pointing at the
  sink); members / seconds from launching it until it exits with every send-log
  row recorded (checked: none left queued). Includes the start of the process
  and fixing the audience.
- `naive_msgs_per_s`: one `email.message.EmailMessage` per member (the same
  personalised HTML and text) sent with `smtplib.SMTP.sendmail` over one
  connection, on a sample (`--naive-sample`, 5,000).
- `raw_msgs_per_s`: the limit of this machine and sink: prebuilt message bytes
  (1,000 different ones, reused) over raw sockets, fully pipelined (a batch of
  100 messages in one write, then its replies), on four connections (threads),
  on a sample (`--raw-sample`, 50,000).
  Measured twice, before and right after the engine phase, and averaged
  (`raw_msgs_per_s_before`, `raw_msgs_per_s_after`): this machine's speed drifts
  by a fifth and more from minute to minute, and the engine is compared with
  the limit of the same minutes.
- `ratio_to_raw`: `msgs_per_s / raw_msgs_per_s`.
- `peak_rss_mb`: the engine's peak resident memory in MiB, sampled every 50 ms
  over `klubpost send` and the sender processes it forks (`SEND_PROCESSES`, one
  per core), with the pages the forks share counted once: the sum of their
  proportional set sizes (PSS), i.e. the memory the machine really gives it.
  Also printed: `rss_sum_mb` (each process's RSS added up, shared pages counted
  in each: an upper bound) and `largest_process_rss_mb` (ru_maxrss).
- `dkim_msgs_per_s`: the same engine run again after the library has set up its
  DKIM key (`campaigns.dkim`, RSA 2048, rsa-sha256), to a second club with the
  first `--dkim-members` (10,000) members: every mail signed.
- `received`: the messages the sink counted in the engine phase.

Extra keys: the database kind, the engine's rate inside its send window
(`campaign.started_at` to the last `sent_at`), its wall and CPU seconds (on a busy
machine wall time says little), each baseline's sink count, and the load average.

`--profile-engine FILE` runs the engine phase under py-spy (when installed) and
writes its flame graph (SVG) or, with a `.txt` name, a raw collapsed-stack file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import Integer, delete, func, insert, literal, select, text  # noqa: E402

from accounts.models import Library  # noqa: E402
from bench.common import (  # noqa: E402
    bench_club,
    database_server_cpu,
    free_port,
    log,
    process_cpu,
)
from campaigns import dkim, sending  # noqa: E402
from campaigns.models import Campaign, SendLog, SendStatus  # noqa: E402
from campaigns.rendering import Recipient  # noqa: E402
from campaigns.services import create_campaign  # noqa: E402
from campaigns.smtp import Envelope, dot_stuff  # noqa: E402
from klubpost import create_app  # noqa: E402
from klubpost.db import db, utcnow  # noqa: E402
from subscribers.models import Membership, Subscriber  # noqa: E402
from subscribers.services import create_club  # noqa: E402

SMTP_SINK = "/usr/sbin/smtp-sink"
NEWSLETTER = ROOT / "bench" / "newsletter.mjml"
SECRET = "bench-send-secret"
CHUNK = 20_000
RAW_DISTINCT = 1_000
RAW_BATCH = 100
FIRST = ["Anna", "Bo", "Carla", "Dirk", "Emma", "Frederik", "Greta", "Hans", "Ida"]
LAST = ["Jensen", "de Vries", "Nielsen", "Bakker", "Hansen", "Visser", "Sørensen"]


# ------------------------------------------------------------------ the sink


class Sink:
    """A fresh postfix smtp-sink on a free port; `stop()` returns its mesg count."""

    def __init__(self) -> None:
        self.port = free_port()
        self.output = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        command = [SMTP_SINK, "-c"]
        if os.geteuid() == 0:
            command += ["-u", "nobody"]
        command += [f"127.0.0.1:{self.port}", "1000"]
        self.process = subprocess.Popen(
            command, stdout=self.output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("smtp-sink did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        """The MAIL_URL that sends to this sink."""
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """Stop the sink; how many messages it received (`cpu_seconds`: the CPU
        time it used)."""
        time.sleep(0.2)
        self.cpu_seconds = process_cpu(self.process.pid)
        self.process.terminate()
        self.process.wait(10)
        self.output.seek(0)
        counts = re.findall(rb"mesg=(\d+)", self.output.read())
        self.output.close()
        return int(counts[-1]) if counts else 0


# ------------------------------------------------------------------ data


def populate(members: int, tag: str) -> tuple[int, int]:
    """A library, a club with `members` confirmed members and the campaign draft."""
    session = db.session
    club = bench_club("send", tag, reply_to="redaktion@bench.example.dk")
    library = club.library
    rng = random.Random(4)
    now = utcnow()
    started = time.perf_counter()
    for first_row in range(0, members, CHUNK):
        rows = []
        for n in range(first_row, min(first_row + CHUNK, members)):
            first = rng.choice(FIRST)
            email = f"{first.lower()}.{tag}.{n}@mail{n % 80}.example.dk"
            rows.append(
                {
                    "library_id": library.id,
                    "email": email,
                    "email_key": email,
                    "first_name": first,
                    "last_name": rng.choice(LAST),
                    "language": "da",
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
            )
        session.execute(insert(Subscriber), rows)
    at = Membership.__table__.c
    session.execute(
        insert(Membership).from_select(
            [
                "subscriber_id",
                "club_id",
                "status",
                "tracking_consent",
                "consent_source",
                "submitted_at",
                "confirmed_at",
                "updated_at",
            ],
            select(
                Subscriber.id,
                literal(club.id, Integer),
                literal("confirmed", at.status.type),
                literal(True, at.tracking_consent.type),
                literal("bench", at.consent_source.type),
                literal(now, at.submitted_at.type),
                literal(now, at.confirmed_at.type),
                literal(now, at.updated_at.type),
            ).where(Subscriber.library_id == library.id),
        )
    )
    campaign = newsletter_campaign(club)
    session.commit()
    log(f"{members} members created in {time.perf_counter() - started:.1f} s")
    return library.id, campaign.id


def newsletter_campaign(club) -> Campaign:
    """A draft of the sample newsletter (../shared/bench) for the club."""
    source = NEWSLETTER.read_text("utf-8")
    source = source.replace("{{ first_name }}", "{{ recipient.first_name }}")
    source = source.replace("{{ unsubscribe_url }}", "{{ recipient.unsubscribe_url }}")
    return create_campaign(
        db.session,
        club,
        None,
        {"kind": "regular", "subject": "Månedens debatter", "custom_mjml": source},
    )


def dkim_campaign(library_id: int, members: int) -> int:
    """The library signs with its own DKIM key (as set up on its settings page);
    a second club holds its first `members` members and gets the newsletter."""
    session = db.session
    library = session.get(Library, library_id)
    dkim.configure(library, "bench.example.dk", "kp2026", dkim.generate_pem())
    club = create_club(
        session,
        library,
        name="Signeret",
        slug="signeret",
        language="da",
        from_name="Her er debat",
        from_email="debat@bench.example.dk",
        reply_to=None,
        double_opt_in=True,
    )
    first = (
        select(Subscriber.id)
        .where(Subscriber.library_id == library_id)
        .order_by(Subscriber.id)
        .limit(members)
        .subquery()
    )
    now = utcnow()
    at = Membership.__table__.c
    session.execute(
        insert(Membership).from_select(
            ["subscriber_id", "club_id", "status", "tracking_consent"]
            + ["consent_source", "submitted_at", "confirmed_at", "updated_at"],
            select(
                first.c.id,
                literal(club.id, Integer),
                literal("confirmed", at.status.type),
                literal(True, at.tracking_consent.type),
                literal("bench", at.consent_source.type),
                literal(now, at.submitted_at.type),
                literal(now, at.confirmed_at.type),
                literal(now, at.updated_at.type),
            ),
        )
    )
    campaign = newsletter_campaign(club)
    session.commit()
    return campaign.id


def sample_rows(campaign: Campaign, count: int) -> list[sending.Claimed]:
    """The first `count` members as the engine sees them (no rows are claimed)."""
    query = (
        select(
            Subscriber.id,
            Subscriber.email,
            Subscriber.first_name,
            Subscriber.last_name,
            Subscriber.attributes,
        )
        .join(Membership, Membership.subscriber_id == Subscriber.id)
        .where(Membership.club_id == campaign.club_id)
        .order_by(Membership.id)
        .limit(count)
    )
    return [
        sending.Claimed(
            send_id=10_000_000 + n,
            subscriber_id=sid,
            email=email,
            first_name=first,
            last_name=last,
            attributes=attributes or {},
        )
        for n, (sid, email, first, last, attributes) in enumerate(
            db.session.execute(query)
        )
    ]


# ------------------------------------------------------------------ phases


class TreeMemory:
    """Samples the resident memory of a process and all its descendants.

    `klubpost send` forks sender processes, so one process's ru_maxrss is not
    the engine's memory. RSS summed over the tree counts pages the forks share
    once per process (an upper bound); PSS shares them out (the fair figure).
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,))
        self._thread.start()

    def _tree(self) -> list[int]:
        pids, index = [self.pid], 0
        while index < len(pids):
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pids[index]}/task"):
                    path = f"/proc/{pids[index]}/task/{task}/children"
                    with open(path) as children:
                        pids += [int(child) for child in children.read().split()]
            index += 1
        return pids

    @staticmethod
    def _kib(path: str, field: str) -> int:
        with contextlib.suppress(OSError), open(path) as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
        return 0

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            pids = self._tree()
            rss = sum(self._kib(f"/proc/{p}/status", "VmRSS:") for p in pids)
            pss = sum(self._kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            self.peak_rss, self.peak_pss = (
                max(self.peak_rss, rss),
                max(self.peak_pss, pss),
            )

    def stop(self) -> tuple[float, float]:
        """Peak summed RSS and PSS, in MiB."""
        self._stop.set()
        self._thread.join()
        return self.peak_rss / 1024, self.peak_pss / 1024


def engine_phase(
    url: str, campaign_id: int, members: int, profile: str | None = None
) -> dict:
    """`klubpost send ID` in a subprocess to a fresh sink: rate, RSS, received."""
    sink = Sink()
    env = dict(
        os.environ,
        DATABASE_URL=url,
        MAIL_URL=sink.url,
        SECRET_KEY=SECRET,
        KLUBPOST_ENV="bench",
        SEND_CONNECTIONS="4",
        SEND_BATCH_SIZE="100",
    )
    command = [sys.executable, "-m", "klubpost.cli", "send", str(campaign_id)]
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if profile and os.path.exists(spy):
        fmt = "raw" if profile.endswith(".txt") else "flamegraph"
        command = [spy, "record", "-r", "100", "--subprocesses", "--gil", "-f", fmt]
        command += ["-o", profile, "--"]
        command += [sys.executable, "-m", "klubpost.cli", "send", str(campaign_id)]
    elif profile:
        log("py-spy not found: the engine runs without a profile")
    server_before = database_server_cpu()
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
        memory = TreeMemory(process.pid)
        _pid, status, usage = os.wait4(process.pid, 0)
        tree_rss, tree_pss = memory.stop()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        server = database_server_cpu()
        received = sink.stop()
        output.seek(0)
        tail = output.read().decode(errors="replace").strip().splitlines()[-3:]
    log("klubpost send: " + " | ".join(line.strip() for line in tail))
    if process.returncode != 0:
        raise RuntimeError(f"klubpost send failed ({process.returncode})")
    session = db.session
    session.expire_all()
    counts = dict(
        session.execute(
            select(SendLog.status, func.count())
            .where(SendLog.campaign_id == campaign_id)
            .group_by(SendLog.status)
        ).all()
    )
    campaign = session.get(Campaign, campaign_id)
    last_sent = session.scalar(
        select(func.max(SendLog.sent_at)).where(SendLog.campaign_id == campaign_id)
    )
    window = (last_sent - campaign.started_at).total_seconds() if last_sent else 0
    if counts.get(SendStatus.QUEUED):
        raise RuntimeError(f"rows left queued: {counts}")
    # py-spy's own memory is not the sender's.
    peak = tree_pss if not profile else None
    log(
        f"engine: {members} in {seconds:.1f} s, statuses {dict(counts)}, "
        f"sink received {received}, campaign {campaign.status.value}"
    )
    return {
        "msgs_per_s": round(members / seconds),
        "engine_seconds": round(seconds, 2),
        # On a busy machine wall time says little; the sender's CPU time helps.
        "engine_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "engine_window_msgs_per_s": round(members / window) if window else None,
        # Where the machine's CPU went meanwhile: the sink, the database server.
        "sink_cpu_seconds": round(sink.cpu_seconds, 2),
        "db_server_cpu_seconds": None
        if server is None or server_before is None
        else round(server - server_before, 2),
        "sent": counts.get(SendStatus.SENT, 0),
        "peak_rss_mb": None if peak is None else round(peak, 1),
        "rss_sum_mb": None if peak is None else round(tree_rss, 1),
        # ru_maxrss (KiB): the largest single process of the tree.
        "largest_process_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "processes": int(env.get("SEND_PROCESSES") or os.cpu_count() or 1),
        "received": received,
    }


def naive_phase(campaign: Campaign, prepared: sending.Prepared, count: int) -> dict:
    """EmailMessage per member, smtplib over one connection."""
    rows = sample_rows(campaign, count)
    frame = prepared.frame
    sink = Sink()
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
        for row in rows:
            unsubscribe = prepared.links.unsubscribe(row.subscriber_id)
            html, text = prepared.newsletter.personalize(
                Recipient(
                    first_name=row.first_name,
                    email=row.email,
                    unsubscribe_url=unsubscribe,
                    preferences_url=prepared.links.preferences(row.subscriber_id),
                    web_url=prepared.web_url,
                )
            )
            message = EmailMessage()
            message["From"] = f"{frame.from_name} <{frame.from_email}>"
            message["To"] = f"{row.first_name} {row.last_name} <{row.email}>"
            message["Subject"] = frame.subject
            message["Date"] = formatdate(usegmt=True)
            message["Message-ID"] = make_msgid(domain=frame.message_id_domain)
            message["List-Id"] = frame.list_id
            message["List-Unsubscribe"] = f"<{unsubscribe}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            message.set_content(text)
            message.add_alternative(html, subtype="html")
            smtp.sendmail(
                frame.return_path(row.send_id), [row.email], message.as_bytes()
            )
    seconds = time.perf_counter() - started
    received = sink.stop()
    log(f"naive: {len(rows)} in {seconds:.1f} s, sink received {received}")
    return {"naive_msgs_per_s": round(len(rows) / seconds), "naive_received": received}


def engine_messages(
    prepared: sending.Prepared, rows: list[sending.Claimed], frame=None
) -> list[Envelope]:
    """The engine's finished messages for `rows` (optionally another frame)."""
    if frame is not None:
        prepared = sending.Prepared(**{**prepared.__dict__, "frame": frame})
    return [sending.envelope_for(prepared, row)[0] for row in rows]


def raw_phase(
    campaign: Campaign, prepared: sending.Prepared, count: int, connections: int = 4
) -> dict:
    """Prebuilt bytes, fully pipelined, on `connections` sockets at once."""
    rows = sample_rows(campaign, RAW_DISTINCT)
    wire = []
    for envelope in engine_messages(prepared, rows):
        wire.append(
            f"MAIL FROM:<{envelope.sender}>\r\nRCPT TO:<{envelope.recipient}>\r\n"
            "DATA\r\n".encode()
            + dot_stuff(envelope.data)
            + b".\r\n"
        )
    sink = Sink()
    per_connection = count // connections
    errors: list[Exception] = []

    def work(offset: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", sink.port)) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                reader = sock.makefile("rb")
                reader.readline()
                sock.sendall(b"EHLO bench\r\n")
                while reader.readline()[3:4] == b"-":
                    pass
                done = 0
                while done < per_connection:
                    size = min(RAW_BATCH, per_connection - done)
                    batch = [wire[(offset + done + i) % len(wire)] for i in range(size)]
                    sock.sendall(b"".join(batch))
                    for _ in range(4 * size):  # MAIL, RCPT, DATA (354), end
                        line = reader.readline()
                        if line[:1] not in (b"2", b"3"):
                            raise RuntimeError(f"sink refused: {line!r}")
                    done += size
                sock.sendall(b"QUIT\r\n")
                reader.readline()
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(n * 250,)) for n in range(connections)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    received = sink.stop()
    if errors:
        raise errors[0]
    total = per_connection * connections
    log(f"raw: {total} in {seconds:.1f} s on {connections}, sink received {received}")
    return {
        "raw_msgs_per_s": round(total / seconds),
        "raw_received": received,
        "raw_sink_cpu_seconds_per_100k": round(sink.cpu_seconds * 100_000 / total, 2),
    }


# ------------------------------------------------------------------ main


def prepare_campaign(campaign_id: int) -> tuple[Campaign, sending.Prepared]:
    """The campaign and the engine's rendering of it (inside a request context)."""
    campaign = db.session.get(Campaign, campaign_id)
    return campaign, sending.prepare(db.session, campaign)


def main() -> None:
    """Run every phase and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--naive-sample", type=int, default=5_000)
    parser.add_argument("--raw-sample", type=int, default=50_000)
    parser.add_argument("--dkim-members", type=int, default=10_000)
    parser.add_argument("--profile-engine", metavar="FILE")
    parser.add_argument(
        "--skip-baselines", action="store_true", help="only the engine phase"
    )
    args = parser.parse_args()
    if not os.path.exists(SMTP_SINK):
        sys.exit(f"{SMTP_SINK} is missing (Debian package postfix)")
    workdir = tempfile.mkdtemp()
    url = args.database_url or f"sqlite:///{workdir}/bench.sqlite3"
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": SECRET, "ENV": "bench"})
    result: dict = {"members": args.members}
    with app.app_context():
        upgrade()
        library_id, campaign_id = populate(args.members, uuid.uuid4().hex[:8])
        try:
            campaign, prepared = prepare_campaign(campaign_id)
            size = len(engine_messages(prepared, sample_rows(campaign, 1))[0].data)
            log(f"message size: {size / 1024:.1f} KiB")
            if not args.skip_baselines:
                result.update(naive_phase(campaign, prepared, args.naive_sample))
                result.update(raw_phase(campaign, prepared, args.raw_sample))
            db.session.commit()
            result.update(
                engine_phase(url, campaign_id, args.members, args.profile_engine)
            )
            if not args.skip_baselines:
                # The raw limit again, right after the engine: on a machine
                # whose speed drifts, the engine is compared with the mean of
                # the limit measured before and after it.
                before = result["raw_msgs_per_s"]
                after = raw_phase(campaign, prepared, args.raw_sample)
                result["raw_msgs_per_s_before"] = before
                result["raw_msgs_per_s_after"] = after["raw_msgs_per_s"]
                result["raw_msgs_per_s"] = round((before + after["raw_msgs_per_s"]) / 2)
            if not args.skip_baselines:
                members = min(args.dkim_members, args.members)
                signed = engine_phase(url, dkim_campaign(library_id, members), members)
                result["dkim_msgs_per_s"] = signed["msgs_per_s"]
                result["dkim_members"] = members
            result["database"] = db.engine.dialect.name
            print_result(result, size)
        finally:
            db.session.rollback()
            if args.database_url:  # a temporary file goes as a whole
                cleanup(library_id, campaign_id)
    with contextlib.suppress(OSError):
        shutil.rmtree(workdir)


def cleanup(library_id: int, campaign_id: int) -> None:
    """Delete what the run added. The send log goes first, by its campaign index:
    deleting the subscribers first would look up send_log.subscriber_id and
    membership_id, which have no index (one scan of the log per member)."""
    started = time.perf_counter()
    db.session.execute(delete(SendLog).where(SendLog.campaign_id == campaign_id))
    db.session.commit()
    if db.engine.dialect.name == "postgresql":  # or its dead rows are scanned
        with db.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as connection:
            connection.execute(text("VACUUM send_log"))
    db.session.execute(delete(Library).where(Library.id == library_id))
    db.session.commit()
    log(f"cleaned up in {time.perf_counter() - started:.1f} s")


def print_result(result: dict, size: int) -> None:
    """The JSON line, required keys first (printed before the clean-up)."""
    if result.get("raw_msgs_per_s"):
        result["ratio_to_raw"] = round(
            result["msgs_per_s"] / result["raw_msgs_per_s"], 3
        )
    result["message_kib"] = round(size / 1024, 1)
    result["load_average"] = round(os.getloadavg()[0], 1)
    keys = ["members", "msgs_per_s", "naive_msgs_per_s", "raw_msgs_per_s"]
    keys += ["ratio_to_raw", "peak_rss_mb", "dkim_msgs_per_s", "received"]
    ordered = {key: result.get(key) for key in keys}
    ordered.update((k, v) for k, v in result.items() if k not in ordered)
    print(json.dumps(ordered), flush=True)


if __name__ == "__main__":
    main()
