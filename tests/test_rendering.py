"""Rendering newsletters from the built-in MJML templates."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

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

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = ("da", "nl", "en")
KINDS = ("before_event", "after_event", "regular")


def make_event(**overrides) -> EventInfo:
    """An event far enough ahead that it is still to come whenever tests run."""
    values = {
        "title": "Democracy and algorithms",
        "description": "How do algorithms shape public debate?\n\nWith Anna Berg.",
        "starts_at": datetime(2037, 12, 10, 18, 0, tzinfo=UTC),
        "ends_at": datetime(2037, 12, 10, 20, 0, tzinfo=UTC),
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


def compile_en(source: str, **content_overrides):
    return compile_newsletter(
        source, content(**content_overrides), BRAND, ClubInfo("Club", "en")
    )


def mjml_body(inner: str, head: str = "") -> str:
    """A minimal newsletter around `inner`, with the required unsubscribe link."""
    return (
        f"<mjml>\n<mj-head>{head}</mj-head>\n<mj-body>\n<mj-section>\n<mj-column>\n"
        f"{inner}\n"
        '<mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a></mj-text>\n'
        "</mj-column>\n</mj-section>\n</mj-body>\n</mjml>\n"
    )


FOOTER_WORDS = {
    "da": ("Afmeld nyhedsbrevet", "Skift dine indstillinger", "Se nyhedsbrevet i"),
    "nl": ("Afmelden", "Je voorkeuren aanpassen", "Bekijk deze nieuwsbrief in"),
    "en": ("Unsubscribe", "Update your preferences", "View this newsletter in"),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_footer_links_are_visible_in_the_clubs_language(language):
    compiled = compile_newsletter(
        template("regular", language),
        content(blocks=[ALL_BLOCKS[0]]),
        BRAND,
        ClubInfo("Club", language),
    )
    html, text = compiled.personalize(recipient())
    unsubscribe, preferences, browser = FOOTER_WORDS[language]
    for url, words in (
        ("https://k.example/u/TOKEN?a=1&amp;b=2", unsubscribe),
        ("https://k.example/p/TOKEN", preferences),
        ("https://k.example/w/TOKEN", browser),
    ):
        assert re.search(f'<a href="{re.escape(url)}"[^>]*>{words}', html)
    for words in (unsubscribe, preferences):
        number = text.split(words + " [")[1].split("]")[0]
        assert f"[{number}] https://k.example/" in text


@pytest.mark.parametrize(
    ("language", "when"),
    [
        ("da", "torsdag den 10. december 2037, 19.00–21.00"),
        ("nl", "donderdag 10 december 2037, 19:00–21:00"),
        ("en", "Thursday, December 10, 2037, 7:00\u202fPM–9:00\u202fPM"),
    ],
)
def test_event_card_shows_local_time_in_the_clubs_language(language, when):
    compiled = compile_newsletter(
        template("before_event", language),
        content("before_event", blocks=[{"type": "event", "event_id": 7}]),
        BRAND,
        ClubInfo("Club", language),
    )
    html, text = compiled.personalize(recipient())
    assert when in html and when in text
    assert "Main library, Herning" in html
    assert 'href="https://tickets.example.dk/event/1234"' in html


def test_after_event_card_lists_the_materials():
    compiled = compile_en(
        template("after_event", "en"),
        kind="after_event",
        blocks=[{"type": "event", "event_id": 7}],
    )
    html, text = compiled.personalize(recipient())
    assert "Materials from the event" in html
    assert '<a href="https://bibliotek.example.dk/s.pdf"' in html
    assert "Slides (PDF) [" in text


def test_brand_colours_logo_and_club_name_are_shown():
    brand = Brand(
        library_name="Bibliotheek Utrecht",
        logo_url="https://utrecht.example.nl/logo.png",
        primary_color="#004b87",
        accent_color="#e4002b",
    )
    compiled = compile_newsletter(
        template("regular", "nl"), content(), brand, ClubInfo("Leesclub", "nl")
    )
    html, _text = compiled.personalize(recipient())
    assert 'src="https://utrecht.example.nl/logo.png"' in html
    assert 'alt="Bibliotheek Utrecht"' in html
    assert "background-color:#004b87" in html and "#e4002b" in html
    assert "Leesclub" in html


def test_inline_styles_are_really_inlined():
    source = mjml_body(
        '<mj-text><p class="lead">Hello</p></mj-text>',
        head='<mj-style inline="inline">.lead { color: #123456; }</mj-style>',
    )
    html, _text = compile_en(source).personalize(recipient())
    assert '<p class="lead" style="color: #123456;">Hello</p>' in html
    assert ".lead" not in html.split("<body")[0]  # not left as a <style> block


def test_builtin_template_styles_reach_the_elements():
    compiled = compile_en(template("regular", "en"), blocks=[ALL_BLOCKS[0]])
    html, _text = compiled.personalize(recipient())
    assert '<p style="margin: 0 0 14px 0;">First paragraph.</p>' in html
    assert '<h2 style="margin: 0 0 10px 0;' in html


class _Elements(HTMLParser):
    """The tags, attributes and texts of an HTML document, as a browser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags, self.attributes, self.texts = set(), [], []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.extend(attrs)

    def handle_data(self, data):
        self.texts.append(data.strip())


def test_editors_text_is_escaped_everywhere():
    evil = '<script>alert(1)</script> & "quotes"'
    blocks = [
        {"type": "text", "heading": evil, "text": evil + "\n<mj-include path='x'/>"},
        {"type": "image", "url": "https://b.example/i.png", "alt": evil, "link": None},
        {"type": "button", "label": evil, "url": "https://b.example/?a=1&b=2"},
        {
            "type": "links",
            "title": evil,
            "links": [{"label": evil, "url": "https://b.example/x"}],
        },
        {"type": "event", "event_id": 7},
    ]
    events = {7: make_event(title=evil, description=evil, venue=evil)}
    compiled = compile_en(template("before_event", "en"), blocks=blocks, events=events)
    html, text = compiled.personalize(recipient())
    parsed = _Elements()
    parsed.feed(html)
    assert "script" not in parsed.tags and "mj-include" not in parsed.tags
    assert evil in parsed.texts  # shown as text, exactly as typed
    assert parsed.texts.count(evil) >= 5
    assert ("alt", evil) in parsed.attributes  # still one attribute value
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in html
    assert 'href="https://b.example/?a=1&amp;b=2"' in html
    assert evil in text


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,x", "https://", "http://a b", ""]
)
def test_unsafe_or_broken_link_names_the_block(url):
    blocks = [ALL_BLOCKS[0], {"type": "button", "label": "Go", "url": url}]
    with pytest.raises(RenderError) as error:
        compile_en(template("regular", "en"), blocks=blocks)
    assert error.value.message.startswith("Block 2 (button):")


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({"type": "event", "event_id": 99}, "Block 1 (event): event 99"),
        ({"type": "event"}, "Block 1 (event): no event chosen"),
        ({"type": "event", "event_id": "x"}, "Block 1 (event): no event chosen"),
        ({"type": "event", "event_id": "8"}, "Block 1 (event): event 8 is not"),
        ({"type": "text", "text": ""}, "Block 1 (text): “text” is empty"),
        ({"type": "text", "text": 5}, "Block 1 (text): “text” must be text"),
        ({"type": "links", "links": []}, "Block 1 (links): the list has no links"),
        (
            {"type": "links", "links": [{"url": "https://a.example"}]},
            "Block 1 (links): link 1 has no",
        ),
        ({"type": "image", "alt": "x"}, "Block 1 (image): the link is missing"),
        ({"text": "no type"}, "Block 1 (?): unknown type"),
        ("not a block", "Block 1 (?): unknown type"),
    ],
)
def test_malformed_blocks_are_refused_with_their_number(block, expected):
    with pytest.raises(RenderError) as error:
        compile_en(template("regular", "en"), blocks=[block])
    assert error.value.message.startswith(expected)


def test_template_syntax_error_has_its_line():
    source = mjml_body("<mj-text>{% if %}</mj-text>")
    with pytest.raises(RenderError) as error:
        compile_en(source)
    assert error.value.line == 6
    assert "Template error" in error.value.message
    assert str(error.value).startswith("Line 6: ")


def test_undefined_name_in_template_has_its_line():
    with pytest.raises(RenderError) as error:
        compile_en(mjml_body("<mj-text>{{ frist_name }}</mj-text>"))
    assert error.value.line == 6
    assert "frist_name" in error.value.message


def test_unknown_mjml_element_has_its_line():
    with pytest.raises(RenderError) as error:
        compile_en(mjml_body("<mj-txt>Hello</mj-txt>"))
    assert error.value.line == 6
    assert "<mj-txt>" in error.value.message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hello", "starting with <mjml>"),
        ("<mjml><mj-body><mj-section foo=>", "malformed"),
        ("<mj-body></mj-body>", "starting with <mjml>"),
        ("<mjml><mj-body><mj-section><mj-column><mj-text>x", "not closed"),
    ],
)
def test_invalid_mjml_is_a_clear_error(source, expected):
    with pytest.raises(RenderError) as error:
        compile_en(source)
    assert expected in error.value.message


@pytest.mark.parametrize(
    "include",
    [
        '<mj-include path="/etc/passwd" />',
        '<MJ-INCLUDE path="https://example.org/x.mjml" />',
        '<mj-include path="./header.mjml" type="html" />',
    ],
)
def test_mj_include_is_refused(include, tmp_path, monkeypatch):
    (tmp_path / "header.mjml").write_text("<mj-text>secret</mj-text>")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RenderError) as error:
        compile_en(mjml_body(include))
    assert "mj-include" in error.value.message
    assert error.value.line == 6


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__",
        "recipient.__init__.__globals__",
        "content.__class__.__subclasses__()",
        "brand.items.__self__.__class__",
        "'x' * 100000000",
        "range(10**12)|list",
        "range(5000)|list",
    ],
)
def test_sandbox_refuses_python_internals(expression):
    with pytest.raises(RenderError) as error:
        compile_en(mjml_body(f"<mj-text>{{{{ {expression} }}}}</mj-text>"))
    assert error.value.line == 6
    assert "object" not in error.value.message.split(":")[0]


def test_missing_unsubscribe_link_is_refused():
    source = "<mjml><mj-body><mj-section><mj-column><mj-text>Hi {{ first_name }}"
    source += "</mj-text></mj-column></mj-section></mj-body></mjml>"
    with pytest.raises(RenderError) as error:
        compile_en(source)
    assert "unsubscribe link" in error.value.message


def test_missing_preferences_and_browser_links_are_warned_about():
    compiled = compile_en(mjml_body("<mj-text>Hi</mj-text>"))
    assert len(compiled.warnings) == 2
    assert "preferences" in compiled.warnings[0]
    assert "view in browser" in compiled.warnings[1]


def test_personal_values_changed_by_a_filter_are_refused():
    with pytest.raises(RenderError) as error:
        compile_en(mjml_body("<mj-text>Hi {{ first_name|upper }}</mj-text>"))
    assert "{{ first_name }}" in error.value.message


def test_large_newsletter_warns_about_gmail_clipping():
    paragraph = "A long paragraph about books. " * 40
    blocks = [{"type": "text", "heading": "More", "text": paragraph}] * 120
    compiled = compile_en(template("regular", "en"), blocks=blocks)
    assert compiled.html_size > 100 * 1024
    assert any("Gmail" in warning for warning in compiled.warnings)
    small = compile_en(template("regular", "en"), blocks=[ALL_BLOCKS[0]])
    assert small.warnings == [] and small.html_size < 100 * 1024


def test_text_part_is_readable():
    compiled = compile_en(template("regular", "en"))
    _html, text = compiled.personalize(recipient())
    assert "<" not in text.replace("<script", "") and "{" not in text
    assert "Welcome\n=======\n\nFirst paragraph.\n\nSecond." in text
    assert "Three debates in December" not in text  # the hidden preheader
    assert "- A book [" in text and "- An article [" in text
    assert "See the programme [" in text
    references = text.rsplit("\n\n", 1)[1].splitlines()
    assert references[0] == "[1] https://k.example/w/TOKEN"
    assert "https://b.example/1" in "\n".join(references)
    assert all(len(line) <= 76 or "http" in line for line in text.splitlines())


def test_personalize_escapes_values_in_html_only():
    compiled = compile_en(mjml_body("<mj-text>Hi {{ first_name }}</mj-text>"))
    html, text = compiled.personalize(recipient(first_name='<b>Ann</b> & "Bo"'))
    assert "Hi &lt;b&gt;Ann&lt;/b&gt; &amp; &quot;Bo&quot;" in html
    assert 'Hi <b>Ann</b> & "Bo"' in text


def test_empty_first_name_gets_a_friendly_word():
    compiled = compile_newsletter(
        template("regular", "da"), content(), BRAND, ClubInfo("Klub", "da")
    )
    html, text = compiled.personalize(recipient(first_name=" "))
    assert "Kære læser," in html and "Kære læser," in text
    html, _text = compiled.personalize(recipient(first_name=None))
    assert "Kære læser," in html


def test_each_recipient_gets_their_own_values():
    compiled = compile_en(
        mjml_body(
            "<mj-text>{{ recipient.first_name }} {{ email }} "
            "{{ recipient.extra.member_no }}</mj-text>"
        )
    )
    first, _ = compiled.personalize(recipient(extra={"member_no": "A-17"}))
    second, _ = compiled.personalize(
        recipient(first_name="Jan", email="jan@example.org", unsubscribe_url="u2")
    )
    assert "Mette mette@example.org A-17" in first
    assert "Jan jan@example.org </div>" in second and 'href="u2"' in second
    assert "TOKEN?a=1" not in second


def test_links_are_reported_with_their_tracking_choice():
    compiled = compile_en(template("regular", "en"))
    links = {link.url: link for link in compiled.links}
    assert links["https://b.example/1"].tag == "books"
    assert links["https://b.example/1"].track is True
    assert links["https://b.example/2"].track is False
    assert "https://tickets.example.dk/event/1234" in links
    assert "https://bibliotek.example.dk/" in links


def test_bad_brand_colour_is_named():
    brand = Brand(library_name="L", primary_color='red" onload="x')
    with pytest.raises(RenderError) as error:
        compile_newsletter(template("regular", "en"), content(), brand, ClubInfo("C"))
    assert "primary_color" in error.value.message


def test_own_template_can_reuse_the_builtin_layout():
    source = (
        '{% set lang = "nl" %}{% extends "klubpost/layout.mjml" %}'
        "{% block kicker %}Extra editie{% endblock %}"
        '{% block content %}{{ blocks.render(content.blocks, "listing") }}'
        "{% endblock %}"
    )
    html, _text = compile_en(source).personalize(recipient())
    assert "Extra editie" in html and "Afmelden" in html and "Welcome" in html


def test_shared_sample_newsletter_compiles():
    sample = ROOT / "bench" / "newsletter.mjml"
    compiled = compile_en(sample.read_text())
    html, text = compiled.personalize(recipient())
    assert "Kære Mette, her er månedens debatter." in html
    assert 'href="https://k.example/u/TOKEN?a=1&amp;b=2"' in html
    assert "Demokrati og algoritmer\n=======================" in text


def test_builtin_templates_cover_every_kind_and_language():
    keys = {(t.kind, t.language) for t in builtin_templates()}
    assert keys == {(k, lang) for k in KINDS for lang in LANGUAGES}
    names = {t.name for t in builtin_templates()}
    assert len(names) == 9


def test_blocks_links_can_be_replaced_per_recipient():
    compiled = compile_en(template("regular", "en"))
    index = [link.url for link in compiled.links].index("https://b.example/1")
    html, text = compiled.personalize(
        recipient(), link_urls={index: "https://k.example/c/SIGNED?x=1&y=2"}
    )
    assert 'href="https://k.example/c/SIGNED?x=1&amp;y=2"' in html
    assert "https://k.example/c/SIGNED?x=1&y=2" in text
    assert 'href="https://b.example/1"' not in html
    assert 'href="https://b.example/2"' in html  # the others keep their URL
    plain, _text = compiled.personalize(recipient())
    assert 'href="https://b.example/1"' in plain


def test_editor_is_warned_about_images_without_text_and_past_events():
    blocks = [
        {"type": "image", "url": "https://b.example/i.png", "alt": ""},
        {"type": "event", "event_id": 7},
    ]
    past = make_event(
        starts_at=datetime(2020, 1, 1, 18, tzinfo=UTC),
        ends_at=datetime(2020, 1, 1, 20, tzinfo=UTC),
    )
    compiled = compile_en(
        template("before_event", "en"),
        kind="before_event",
        blocks=blocks,
        events={7: past},
    )
    assert compiled.warnings == [
        "Block 1 (image) has no text for readers who don't see images.",
        "Block 2 (event): “Democracy and algorithms” has already taken place.",
    ]
    after = compile_en(
        template("after_event", "en"),
        kind="after_event",
        blocks=blocks[1:],
        events={7: past},
    )
    assert after.warnings == []


def test_a_templates_own_links_are_tracked_in_the_order_they_appear():
    source = mjml_body(
        '<mj-image src="https://x.dk/logo.png" alt="Logo" href="https://x.dk/" />\n'
        '<mj-text><a href="https://x.dk/a?b=1&amp;c=2" data-tag="Book">'
        'Read <b>the</b> book</a> or <a href="https://x.dk/private" data-notrack>'
        'this</a> or <a href="mailto:desk@x.dk">write</a>.</mj-text>\n'
        '<mj-button href="https://tickets.x.dk/1">Tickets</mj-button>\n'
        '<mj-text><a href="https://x.dk/u?e={{ recipient.email }}">Me</a></mj-text>'
    )
    block = {"type": "button", "label": "Block", "url": "https://x.dk/block"}
    compiled = compile_en(source, blocks=[block])
    found = [(link.label, link.url, link.tag, link.track) for link in compiled.links]
    assert found == [
        ("Logo", "https://x.dk/", None, True),
        ("Read the book", "https://x.dk/a?b=1&c=2", "book", True),
        ("this", "https://x.dk/private", None, False),
        ("Tickets", "https://tickets.x.dk/1", None, True),
        # This template does not show the blocks: their links come last.
        ("Block", "https://x.dk/block", None, True),
    ]
    urls = {index: f"https://t.example/{index}" for index in range(len(compiled.links))}
    html, text = compiled.personalize(sample_recipient("en"), link_urls=urls)
    for index in range(4):
        assert f'href="https://t.example/{index}"' in html
    assert "https://t.example/1" in text
    # Untouched: mailto, and a link that carries the member's own address.
    assert 'href="mailto:desk@x.dk"' in html
    assert "https://x.dk/u?e=" in html and "@example.org" in html
    plain, _text = compiled.personalize(sample_recipient("en"))
    assert 'href="https://x.dk/a?b=1&amp;c=2"' in plain


def test_encoded_bodies_decode_to_exactly_the_personalised_mail():
    import quopri

    compiled = compile_newsletter(
        builtin_templates()[0].source,
        content(),
        BRAND,
        ClubInfo("Klubben", "da"),
    )
    recipient = Recipient(
        first_name="Søren  ",
        email="søren@example.dk",
        unsubscribe_url="https://x.dk/u/" + "a" * 150,
        preferences_url="https://x.dk/p?x=1&y=2",
        web_url="https://x.dk/w",
    )
    urls = {i: f"https://t.dk/c/{'é' * i}{i}" for i in range(len(compiled.links))}
    html, text = compiled.personalize(recipient, urls, '<img src="p.gif">')
    html_qp, text_qp = compiled.encoded(recipient, urls, '<img src="p.gif">')
    assert quopri.decodestring(html_qp).decode() == html.replace("\n", "\r\n")
    assert quopri.decodestring(text_qp).decode() == text.replace("\n", "\r\n")
    assert max(len(line) for line in html_qp.split(b"\r\n")) <= 76
