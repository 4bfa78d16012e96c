"""Import generated people into a club through the JSON API and print records/s.

    .venv/bin/python bench/api_import.py [--database-url URL] [--rows 100000]
        [--no-consent]

Without --database-url it uses a fresh SQLite file. With one, the database is
upgraded and a new library is added to it (nothing existing is touched). The
records go in requests of 10,000 (the API's limit). `--no-consent` imports into
a double opt-in club without consent, so every row also queues a confirmation
mail. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accounts.models import Library, Role  # noqa: E402
from accounts.services import create_user, issue_token  # noqa: E402
from klubpost import create_app  # noqa: E402
from klubpost.db import db  # noqa: E402
from subscribers.services import create_club  # noqa: E402

BATCH = 10_000


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--no-consent", action="store_true")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    app = create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        }
    )
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        token, club_id = _setup()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    counts: dict[str, int] = {}
    started = time.perf_counter()
    for first in range(0, args.rows, BATCH):
        records = [
            {
                "email": f"person{n}@bench.example.dk",
                "first_name": f"Person {n}",
                "attributes": {"branch": "Lind"},
            }
            for n in range(first, min(first + BATCH, args.rows))
        ]
        response = client.post(
            f"/api/clubs/{club_id}/imports",
            json={"records": records, "consent_given": not args.no_consent},
            headers=headers,
        )
        assert response.status_code == 201, response.get_data(as_text=True)[:500]
        for outcome, count in response.get_json()["counts"].items():
            counts[outcome] = counts.get(outcome, 0) + count
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "database": url.split(":", 1)[0],
                "rows": args.rows,
                "consent_given": not args.no_consent,
                "counts": counts,
                "seconds": round(seconds, 2),
                "rows_per_s": round(args.rows / seconds),
            }
        )
    )


def _setup() -> tuple[str, int]:
    slug = "bench-" + secrets.token_hex(4)
    library = Library(name="Bench", slug=slug, domain=f"{slug}.example.dk")
    db.session.add(library)
    db.session.flush()
    user = create_user(
        db.session,
        email=f"editor@{slug}.example.dk",
        name="Bench",
        password="bench-password",
        role=Role.EDITOR,
        library=library,
    )
    club = create_club(
        db.session,
        library,
        name="Bench",
        slug="bench",
        from_name="Bench",
        from_email=f"bench@{slug}.example.dk",
    )
    _api_token, token = issue_token(db.session, user, "bench")
    db.session.commit()
    return token, club.id


if __name__ == "__main__":
    main()
