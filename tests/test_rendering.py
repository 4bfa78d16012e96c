"""Rendering newsletters from the built-in MJML templates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaigns.rendering import (
    Brand,
    ClubInfo,
    Content,
    EventInfo,
    LinkInfo,
    Recipient,
    RenderError,
    builtin_templates,
    compile_newsletter,
    sample_recipient,
)

LANGUAGES = ("da", "nl", "en")
KINDS = ("before_event", "after_event", "regular")


def make_event(**overrides) -> EventInfo:
    values = {
        "title": "Democracy and algorithms",
        "description": "How do algorithms shape public debate?\n\nWith Anna Berg.",
        "starts_at": datetime(2026, 12, 10, 18, 0, tzinfo=UTC),
        "ends_at": datetime(2026, 12, 10, 20, 0, tzinfo=UTC),
        "timezone": "Europe/Copenhagen",
        "venue": "Main library, Herning",
        "image_url": "https://bibliotek.example.dk/img/debate.jpg",
        "ticket_url": "https://tickets.example.dk/event/1234",
        "materials": [LinkInfo("Slides (PDF)", "https://bibliotek.example.dk/s.pdf")],
    }
    values.update(overrides)
    return EventInfo(**values)


ALL_BLOCKS = [
    {"type": "text", "heading": "Welcome", "text": "First paragraph.\n\nSecond."},
    {"type": "event", "event_id": 7},
    {
        "type": "image",
        "url": "https://bibliotek.example.dk/img/hall.jpg",
        "alt": "The reading hall",
        "link": "https://bibliotek.example.dk/",
    },
    {"type": "button", "label": "See the programme", "url": "https://b.example/p"},
    {
        "type": "links",
        "title": "Reading list",
        "links": [
            {"label": "A book", "url": "https://b.example/1", "tag": "books"},
            {"label": "An article", "url": "https://b.example/2", "track": False},
        ],
    },
]

BRAND = Brand(library_name="Herning Bibliotekerne", footer_text="Brogade 1\nHerning")


def content(kind="regular", blocks=None, **overrides) -> Content:
    values = {
        "kind": kind,
        "subject": "December at the club",
        "preheader": "Three debates in December",
        "blocks": ALL_BLOCKS if blocks is None else blocks,
        "events": {7: make_event()},
    }
    values.update(overrides)
    return Content(**values)


def recipient(**overrides) -> Recipient:
    values = {
        "first_name": "Mette",
        "email": "mette@example.org",
        "unsubscribe_url": "https://k.example/u/TOKEN?a=1&b=2",
        "preferences_url": "https://k.example/p/TOKEN",
        "web_url": "https://k.example/w/TOKEN",
    }
    values.update(overrides)
    return Recipient(**values)


def template(kind: str, language: str) -> str:
    (found,) = [
        t for t in builtin_templates() if t.kind == kind and t.language == language
    ]
    return found.source


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_template_renders_every_block(kind, language):
    compiled = compile_newsletter(
        template(kind, language),
        content(kind),
        BRAND,
        ClubInfo(name="Her er debat", language=language),
    )
    html, text = compiled.personalize(recipient())
    assert compiled.warnings == []
    assert "Mette" in html and "Mette" in text
    assert "Her er debat" in html and "Herning Bibliotekerne" in html
    assert "Democracy and algorithms" in html
    assert 'href="https://k.example/u/TOKEN?a=1&amp;b=2"' in html
    assert "https://k.example/u/TOKEN?a=1&b=2" in text
    assert 'href="https://k.example/p/TOKEN"' in html
    assert 'href="https://k.example/w/TOKEN"' in html
    assert "The reading hall" in html and "See the programme" in html
    assert "Reading list" in html and "A book" in html


def test_sample_recipient_preview():
    compiled = compile_newsletter(
        template("before_event", "da"),
        content("before_event"),
        BRAND,
        ClubInfo(name="Her er debat", language="da"),
    )
    html, _text = compiled.personalize(sample_recipient("da"))
    assert "Kære Mette," in html


def test_unknown_block_is_named():
    with pytest.raises(RenderError) as error:
        compile_newsletter(
            template("regular", "en"),
            content(blocks=[ALL_BLOCKS[0], {"type": "video"}]),
            BRAND,
            ClubInfo(name="Club", language="en"),
        )
    assert "Block 2 (video)" in error.value.message
