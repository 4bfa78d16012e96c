"""Danish, Dutch and English: complete catalogs, and the right language per page."""

import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from accounts.models import Role
from conftest import login, make_club, make_library, make_user

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "klubpost" / "translations"


def _read(path: Path, reader=read_po):
    with path.open("rb") as fh:
        return reader(fh)


def _key(message_id):
    return tuple(message_id) if isinstance(message_id, list | tuple) else message_id


def _ids(catalog) -> set:
    return {_key(m.id) for m in catalog if m.id}


def test_message_template_is_up_to_date_with_the_code(tmp_path):
    fresh = tmp_path / "messages.pot"
    pybabel = Path(sys.executable).parent / "pybabel"
    subprocess.run(
        [
            pybabel,
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "--no-location",
            "-o",
            str(fresh),
            "klubpost",
            "accounts",
            "subscribers",
            "campaigns",
            "tracking",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    committed = _read(TRANSLATIONS / "messages.pot")
    new = _read(fresh)
    assert _ids(new) == _ids(committed), "run `make translations` and translate"


@pytest.mark.parametrize("language", ["da", "nl"])
def test_every_message_is_translated_and_compiled(language):
    folder = TRANSLATIONS / language / "LC_MESSAGES"
    template = _read(TRANSLATIONS / "messages.pot")
    po = _read(folder / "messages.po")
    untranslated = [
        m.id
        for m in po
        if m.id
        and (
            not m.string
            or (isinstance(m.string, tuple) and not all(m.string))
            or m.fuzzy
        )
    ]
    assert not untranslated
    assert _ids(template) <= _ids(po)
    mo = _read(folder / "messages.mo", read_mo)
    compiled = {_key(m.id): _key(m.string) for m in mo if m.id}
    assert compiled == {_key(m.id): _key(m.string) for m in po if m.id}


def test_public_page_follows_the_clubs_language(client, db):
    make_club(db, make_library(db, slug="herning", language="da"), slug="debat")
    make_club(
        db, make_library(db, slug="utrecht", language="nl"), slug="debat", language="nl"
    )
    assert "Tilmeld" in client.get("/join/herning/debat").get_data(as_text=True)
    assert "Aanmelden" in client.get("/join/utrecht/debat").get_data(as_text=True)


def test_staff_ui_follows_accept_language_then_the_users_choice(client, db):
    library = make_library(db)
    page = client.get("/login", headers={"Accept-Language": "nl-BE,nl;q=0.9"})
    assert "Inloggen" in page.get_data(as_text=True)
    assert "Log ind" in client.get(
        "/login", headers={"Accept-Language": "da"}
    ).get_data(as_text=True)
    login(client, make_user(db, library, Role.EDITOR, language="en"))
    clubs = client.get("/clubs", headers={"Accept-Language": "da"}).get_data(
        as_text=True
    )
    assert "Clubs" in clubs and "Klubber" not in clubs
