"""How fast newsletters render and personalise.

    .venv/bin/python bench/render.py [path/to/newsletter.mjml]

On an MJML file (default: bench/newsletter.mjml, the shared sample newsletter) and
on a 6-event regular issue from the built-in template it measures:

- the MJML render of the file with mjml-python, and in the same run with the
  official mjml (Node, installed from npm into ~/.cache/klubpost-bench; null when
  npm or node can't be used);
- the whole compile (template, MJML, inlined CSS, text part) of both newsletters;
- personalisation per recipient (median and p99 over 10,000 recipients);
- the preview of the 6-event issue: through the JSON API's preview endpoint when
  the app has it (a temporary SQLite database, an editor's token, a new subject
  in each request as while typing), otherwise the preview's work, compile plus
  one personalisation, timed directly; the output says which.

The last line is one JSON object with the headline figures.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mjml  # noqa: E402

from campaigns.rendering import (  # noqa: E402
    Brand,
    ClubInfo,
    Content,
    EventInfo,
    LinkInfo,
    Recipient,
    builtin_templates,
    compile_newsletter,
    sample_recipient,
)

RECIPIENTS = 10_000
NODE_CACHE = Path.home() / ".cache" / "klubpost-bench"
NODE_SCRIPT = r"""
const mjml2html = require("mjml");
const fs = require("fs");
const source = fs.readFileSync(process.argv[1], "utf8");
const runs = parseInt(process.argv[2], 10);
for (let i = 0; i < 20; i++) mjml2html(source, { validationLevel: "soft" });
const times = [];
for (let i = 0; i < runs; i++) {
  const start = process.hrtime.bigint();
  mjml2html(source, { validationLevel: "soft" });
  times.push(Number(process.hrtime.bigint() - start) / 1e6);
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({ median_ms: times[Math.floor(runs / 2)] }));
"""


def median_ms(action, runs: int) -> float:
    """The median wall time of `action()` in milliseconds, after a warm-up."""
    for _ in range(min(20, runs)):
        action()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def personalize_us(compiled) -> tuple[float, float]:
    """Median and p99 microseconds of personalising for 10,000 recipients."""
    recipients = [
        Recipient(
            first_name=f"Reader{n}",
            email=f"reader{n}@example.org",
            unsubscribe_url=f"https://klubpost.example/u/{n:08d}.abcdefabcdef",
            preferences_url=f"https://klubpost.example/p/{n:08d}.abcdefabcdef",
            web_url=f"https://klubpost.example/w/{n:08d}.abcdefabcdef",
        )
        for n in range(RECIPIENTS)
    ]
    for recipient in recipients[:200]:
        compiled.personalize(recipient)
    times = []
    clock = time.perf_counter_ns
    for recipient in recipients:
        start = clock()
        compiled.personalize(recipient)
        times.append(clock() - start)
    times.sort()
    return times[len(times) // 2] / 1000, times[int(len(times) * 0.99)] / 1000


def six_event_issue() -> tuple[str, Content, Brand, ClubInfo]:
    """A regular Danish issue with six event cards, text, image, button, links."""
    start = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
    events = {
        n: EventInfo(
            title=f"Debat {n}: demokrati og algoritmer",
            description="Hvordan former algoritmer den offentlige debat?\n\n"
            "Oplægsholder og samtale med publikum bagefter.",
            starts_at=start + timedelta(days=4 * n),
            ends_at=start + timedelta(days=4 * n, hours=2),
            timezone="Europe/Copenhagen",
            venue="Hovedbiblioteket, Herning",
            image_url=f"https://bibliotek.example.dk/img/debat{n}.jpg",
            ticket_url=f"https://billetter.example.dk/event/{1000 + n}",
            materials=[LinkInfo("Slides", f"https://bibliotek.example.dk/s/{n}")],
        )
        for n in range(1, 7)
    }
    blocks = [
        {"type": "text", "heading": "Velkommen", "text": "Seks debatter.\n\nGlæd dig."}
    ]
    blocks += [{"type": "event", "event_id": n} for n in events]
    blocks += [
        {"type": "image", "url": "https://bibliotek.example.dk/i.jpg", "alt": "Sal"},
        {"type": "button", "label": "Hele programmet", "url": "https://b.dk/p"},
        {
            "type": "links",
            "title": "Læseliste",
            "links": [
                {"label": f"Bog {n}", "url": f"https://b.dk/{n}"} for n in range(5)
            ],
        },
    ]
    (source,) = [
        t.source
        for t in builtin_templates()
        if t.kind == "regular" and t.language == "da"
    ]
    content = Content("regular", "Her er debat — december", "Seks debatter", blocks)
    content.events = events
    brand = Brand("Herning Bibliotekerne", "https://bibliotek.example.dk/logo.png")
    return source, content, brand, ClubInfo("Her er debat", "da")


def node_mjml_ms(path: Path, runs: int) -> float | None:
    """The official mjml's median render time of `path`, or None without npm."""
    if not shutil.which("node") or not shutil.which("npm"):
        print("mjml (Node): node or npm not found, skipped", file=sys.stderr)
        return None
    NODE_CACHE.mkdir(parents=True, exist_ok=True)
    if not (NODE_CACHE / "node_modules" / "mjml").is_dir():
        package = NODE_CACHE / "package.json"
        if not package.exists():
            package.write_text('{"name": "klubpost-bench", "private": true}\n')
        try:
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "mjml@4"],
                cwd=NODE_CACHE,
                check=True,
                capture_output=True,
                timeout=300,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"mjml (Node): npm install failed, skipped ({exc})", file=sys.stderr)
            return None
    try:
        result = subprocess.run(
            ["node", "-e", NODE_SCRIPT, str(path), str(runs)],
            cwd=NODE_CACHE,
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NODE_PATH": str(NODE_CACHE / "node_modules")},
        )
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"mjml (Node): failed, skipped ({exc})", file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["median_ms"]


def preview_ms(source, content, brand, club) -> tuple[float, str]:
    """The preview's time: the endpoint if the app has one, else its work."""
    try:
        timed = _preview_endpoint_ms(content)
    except Exception as exc:  # report it and fall back: the bench goes on
        print(f"preview endpoint not timed ({exc!r})", file=sys.stderr)
        timed = None
    if timed is not None:
        return timed, "POST /api/campaigns/ID/preview through a Flask test client"

    def preview():
        compiled = compile_newsletter(source, content, brand, club)
        compiled.personalize(sample_recipient(club.language))

    return median_ms(preview, 200), "compile + personalize: no preview endpoint"


PREVIEW_RULE = "/api/campaigns/<int:campaign_id>/preview"


def _preview_endpoint_ms(content: Content) -> float | None:
    """Median time of the JSON API's preview of the 6-event issue, each request
    with a changed subject (as while typing), or None without that endpoint."""
    from klubpost import create_app

    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "bench",
                "DATABASE_URL": f"sqlite:///{folder}/bench.sqlite3",
            }
        )
        if PREVIEW_RULE not in {rule.rule for rule in app.url_map.iter_rules()}:
            return None
        with app.app_context():
            club_id, token = _bench_library()
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}

        def post(url: str, body: dict) -> dict:
            response = client.post(url, json=body, headers=headers)
            if response.status_code not in (200, 201):
                raise RuntimeError(f"{url}: {response.status_code} {response.text}")
            return response.get_json()

        ids = {}
        for number, event in content.events.items():
            local = event.starts_at.astimezone(ZoneInfo(event.timezone))
            created = post(
                "/api/events",
                {
                    "title": event.title,
                    "description": event.description,
                    "starts_at": local.strftime("%Y-%m-%dT%H:%M"),
                    "venue": event.venue,
                    "image_url": event.image_url,
                    "ticket_url": event.ticket_url,
                    "club_ids": [club_id],
                },
            )
            ids[number] = created["id"]
        blocks = [
            {**block, "event_id": ids[block["event_id"]]}
            if block["type"] == "event"
            else block
            for block in content.blocks
        ]
        campaign = post(
            f"/api/clubs/{club_id}/campaigns",
            {"kind": content.kind, "subject": content.subject, "blocks": blocks},
        )
        url = f"/api/campaigns/{campaign['id']}/preview"
        typed = iter(range(1_000_000))
        return median_ms(lambda: post(url, {"subject": f"December {next(typed)}"}), 100)


def _bench_library() -> tuple[int, str]:
    """A migrated database with a library, a club and an editor's API token."""
    from flask_migrate import upgrade

    from accounts.models import Library, Role
    from accounts.services import create_user, issue_token
    from klubpost.db import db
    from subscribers.services import create_club

    with contextlib.redirect_stderr(io.StringIO()):  # Alembic's progress lines
        upgrade()
    library = Library(
        name="Herning Bibliotekerne",
        slug="herning",
        domain="herning.example.dk",
        language="da",
    )
    db.session.add(library)
    db.session.flush()
    club = create_club(
        db.session,
        library,
        name="Her er debat",
        slug="debat",
        description="",
        language="da",
        from_name="Her er debat",
        from_email="debat@herning.example.dk",
        reply_to=None,
        double_opt_in=True,
        tracking_consent_required=True,
    )
    editor = create_user(
        db.session,
        email="editor@herning.example.dk",
        name="Editor",
        password="bench-password-1234",
        role=Role.EDITOR,
        library=library,
    )
    _token, token = issue_token(db.session, editor, "bench")
    db.session.commit()
    return club.id, token


def main() -> None:
    """Run every measurement and print the figures."""
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "bench/newsletter.mjml")
    mjml_source = path.read_text("utf-8")

    render_ms = median_ms(lambda: mjml.mjml2html(mjml_source), 500)
    print(f"{path.name}: mjml-python render {render_ms:.3f} ms")
    sample_club = ClubInfo("Her er debat", "da")
    sample_brand = Brand("Herning Bibliotekerne")
    sample_content = Content("regular", "Her er debat — december", "", [])

    def compile_sample():
        return compile_newsletter(
            mjml_source, sample_content, sample_brand, sample_club
        )

    sample_compile = median_ms(compile_sample, 300)
    sample = compile_sample()
    sample_median, sample_p99 = personalize_us(sample)
    print(
        f"{path.name}: compile {sample_compile:.3f} ms, {sample.html_size} bytes; "
        f"personalize median {sample_median:.2f} µs, p99 {sample_p99:.2f} µs"
    )

    issue = six_event_issue()
    issue_compile = median_ms(lambda: compile_newsletter(*issue), 100)
    compiled = compile_newsletter(*issue)
    issue_median, issue_p99 = personalize_us(compiled)
    print(
        f"6-event regular issue: compile {issue_compile:.3f} ms, "
        f"{compiled.html_size} bytes; personalize median {issue_median:.2f} µs, "
        f"p99 {issue_p99:.2f} µs"
    )

    preview, how = preview_ms(*issue)
    print(f"preview of the 6-event issue: {preview:.2f} ms ({how})")
    node_ms = node_mjml_ms(path, 200)
    shown = "skipped" if node_ms is None else f"{node_ms:.3f} ms"
    print(f"{path.name}: official mjml (Node) render {shown}")

    print(
        json.dumps(
            {
                "render_ms": round(render_ms, 4),
                "personalize_us_median": round(max(sample_median, issue_median), 2),
                "personalize_us_p99": round(max(sample_p99, issue_p99), 2),
                "preview_ms": round(preview, 3),
                "mjml_node_ms": None if node_ms is None else round(node_ms, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
