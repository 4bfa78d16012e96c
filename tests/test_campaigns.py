"""Composing newsletters: drafts, live preview, autosave with conflicts, test
sends, web version and archive, and templates of libraries and consortia."""

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from accounts.models import Consortium, Role
from campaigns import services
from campaigns.models import Campaign, Template
from conftest import (
    csrf_token,
    login,
    make_club,
    make_library,
    make_subscriber,
    make_user,
    outbox_messages,
)
from subscribers.services import join_club


@pytest.fixture
def setup(client, db):
    library = make_library(db, logo_url="https://herning.example.dk/logo.png")
    club = make_club(db, library, reply_to="svar@herning.example.dk")
    event = services.create_event(
        db.session,
        library,
        {
            "title": "Forfatteraften med Anna",
            "starts_at": "2026-12-03T19:30",
            "venue": "Hovedbiblioteket",
            "ticket_url": "https://billet.example.dk/42",
            "club_ids": [club.id],
        },
    )
    db.session.commit()
    editor = make_user(db, library, Role.EDITOR)
    login(client, editor)
    return library, club, event, editor


def _new_draft(client, club, event, **fields):
    data = {
        "kind": "before_event",
        "event_id": str(event.id),
        "template": "",
        "subject": "Kom til forfatteraften",
        "csrf_token": csrf_token(client, f"/clubs/{club.id}/campaigns/new"),
    }
    data.update(fields)
    return client.post(f"/clubs/{club.id}/campaigns/new", data=data)


def _draft(db, client, setup, **fields) -> Campaign:
    _library, club, event, _editor = setup
    response = _new_draft(client, club, event, **fields)
    assert response.status_code == 302, response.get_data(as_text=True)
    return db.session.scalar(select(Campaign).order_by(Campaign.id.desc()))


def _json(client, url, body, page):
    token = csrf_token(client, page)
    return client.post(url, json=body, headers={"X-CSRFToken": token})


TEXT_BLOCK = {"type": "text", "heading": "Velkommen", "text": "Vi ses <b>snart</b>!"}


# ----------------------------------------------------------------- drafts


def test_new_draft_starts_from_the_kinds_template_with_the_event_card(
    client, db, setup
):
    _library, club, event, editor = setup
    campaign = _draft(db, client, setup)
    assert campaign.kind == "before_event" and campaign.status == "draft"
    assert campaign.template_key == "before_event-da"
    assert {"type": "event", "event_id": event.id} in campaign.blocks
    assert campaign.created_by_id == editor.id and campaign.version == 1
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Kom til forfatteraften" in page and "editor.js" in page
    listing = client.get(f"/clubs/{club.id}/campaigns").get_data(as_text=True)
    assert "Kom til forfatteraften" in listing


def test_the_event_page_starts_a_newsletter_about_it(client, db, setup):
    _library, club, event, _editor = setup
    page = client.get(f"/events/{event.id}").get_data(as_text=True)
    start = f"/clubs/{club.id}/campaigns/new?event_id={event.id}"
    assert start in page
    form = client.get(start).get_data(as_text=True)
    assert f'<option selected value="{event.id}">' in form


def test_preview_renders_the_unsaved_form_with_a_sample_reader(client, db, setup):
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    response = _json(
        client,
        f"{page}/preview",
        {
            "subject": "Ny overskrift",
            "blocks": [TEXT_BLOCK, *campaign.blocks[1:]],
        },
        page,
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert "Velkommen" in body["html"] and "Forfatteraften med Anna" in body["html"]
    # Editors' text is escaped: their markup never reaches the mail.
    assert "&lt;b&gt;snart&lt;/b&gt;" in body["html"] and "<b>snart" not in body["html"]
    assert "Velkommen" in body["text"]
    assert "/web/" in body["html"]  # "view in browser" goes to the web version
    # Nothing was saved.
    db.session.refresh(campaign)
    assert campaign.subject == "Kom til forfatteraften" and campaign.version == 1


def test_preview_as_a_chosen_member_uses_their_name_and_links(client, db, setup):
    _library, club, _event, _editor = setup
    anna = make_subscriber(db, club.library, "anna@example.dk", first_name="Annabella")
    join_club(db.session, club, anna, source="t", consent_given=True)
    db.session.commit()
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    source = (
        "<mjml><mj-body><mj-section><mj-column><mj-text>Hej {{ first_name }}"
        '<a href="{{ unsubscribe_url }}">Afmeld</a></mj-text>'
        "</mj-column></mj-section></mj-body></mjml>"
    )
    body = {"blocks": [TEXT_BLOCK], "subscriber_id": anna.id}
    html = _json(client, f"{page}/preview", body, page).get_json()["html"]
    assert "/unsubscribe/" in html and "/preferences/" in html
    response = _json(client, f"{page}/preview", {**body, "custom_mjml": source}, page)
    assert "Hej Annabella" in response.get_json()["html"]
    stranger = make_subscriber(db, club.library, "x@example.dk")
    response = _json(client, f"{page}/preview", {"subscriber_id": stranger.id}, page)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "subscriber_id"


def test_bad_mjml_gives_the_line_and_keeps_the_draft(client, db, setup):
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    broken = "<mjml>\n<mj-body>\n{% if %}\n</mj-body>\n</mjml>"
    response = _json(client, f"{page}/preview", {"custom_mjml": broken}, page)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "render_error" and error["line"] == 3
    # The same text autosaves: a draft may be broken while it is being written.
    response = _json(
        client,
        f"{page}/autosave",
        {"custom_mjml": broken, "version": campaign.version},
        page,
    )
    assert response.status_code == 200
    db.session.refresh(campaign)
    assert campaign.custom_mjml == broken


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"blocks": "not a list"}, "blocks"),
        ({"blocks": [{"type": "video"}]}, "blocks"),
        (
            {"blocks": [{"type": "button", "label": "x", "url": "javascript:x"}]},
            "blocks",
        ),
        ({"blocks": [{"type": "event", "event_id": 999999}]}, "blocks"),
        ({"template": "builtin:nope"}, "template"),
        ({"subject": "x" * 301}, "subject"),
        ({"subject": 5}, "subject"),
    ],
)
def test_bad_drafts_are_refused_with_the_field(client, db, setup, body, field):
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    for url in (f"{page}/preview", f"{page}/autosave"):
        response = _json(client, url, {**body, "version": 1}, page)
        assert response.status_code == 422, url
        assert response.get_json()["error"]["field"] == field
    db.session.refresh(campaign)
    assert campaign.version == 1 and campaign.subject == "Kom til forfatteraften"


def test_preview_and_autosave_want_a_json_object(client, db, setup):
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    response = _json(client, f"{page}/preview", ["a", "list"], page)
    assert response.status_code == 422
    assert "JSON" in response.get_json()["error"]["message"]


def test_another_librarys_event_cannot_be_put_in_a_draft(client, db, setup):
    other = make_library(db, slug="utrecht")
    foreign = services.create_event(
        db.session, other, {"title": "Geheim", "starts_at": "2026-12-01T19:00"}
    )
    db.session.commit()
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    block = {"type": "event", "event_id": foreign.id}
    response = _json(client, f"{page}/preview", {"blocks": [block]}, page)
    assert response.status_code == 422
    assert "Geheim" not in response.get_data(as_text=True)


# ----------------------------------------------------------------- autosave


def test_autosave_bumps_the_version_and_a_stale_save_gets_409(client, app, db, setup):
    library, _club, _event, _editor = setup
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    first = _json(
        client, f"{page}/autosave", {"subject": "Mit emne", "version": 1}, page
    )
    assert first.status_code == 200 and first.get_json()["version"] == 2

    # A second editor had loaded version 1 too and saves over it: refused.
    other_client = app.test_client()
    login(other_client, make_user(db, library, Role.EDITOR, email="b@herning.dk"))
    stale = _json(
        other_client, f"{page}/autosave", {"subject": "Andet emne", "version": 1}, page
    )
    assert stale.status_code == 409
    body = stale.get_json()
    assert "Someone else saved this draft" in body["error"]["message"]
    assert body["current"]["subject"] == "Mit emne" and body["current"]["version"] == 2
    db.session.refresh(campaign)
    assert campaign.subject == "Mit emne"
    # Having compared, they save again on top of version 2.
    again = _json(
        other_client, f"{page}/autosave", {"subject": "Andet emne", "version": 2}, page
    )
    assert again.status_code == 200 and again.get_json()["version"] == 3


def test_the_form_save_without_javascript_keeps_the_losers_text(client, db, setup):
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    _json(client, f"{page}/autosave", {"subject": "Nyere", "version": 1}, page)
    response = client.post(
        page,
        data={
            "csrf_token": csrf_token(client, page),
            "version": "1",
            "subject": "Min tekst, som ikke må gå tabt",
            "preheader": "",
            "template": "builtin:before_event-da",
            "blocks": "[]",
        },
    )
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "Someone else saved this draft" in html
    assert "Min tekst, som ikke må gå tabt" in html
    db.session.refresh(campaign)
    assert campaign.subject == "Nyere"


def test_a_race_between_check_and_write_is_still_caught(db, setup):
    """Two sessions pass the version check; the second UPDATE must fail."""
    _library, club, _event, editor = setup
    campaign = services.create_campaign(
        db.session, club, editor, {"kind": "regular", "subject": "A"}
    )
    db.session.commit()
    from sqlalchemy.orm import Session

    with Session(db.engine) as other:
        theirs = other.get(Campaign, campaign.id)
        services.update_campaign(other, theirs, None, {"subject": "B"}, 1)
        other.commit()
    # This session still holds version 1 in memory and its check passes.
    with pytest.raises(services.VersionConflict):
        services.update_campaign(db.session, campaign, None, {"subject": "C"}, 1)
    assert db.session.get(Campaign, campaign.id).subject == "B"


def test_staff_may_look_and_preview_but_not_change(client, db, setup):
    library, _club, _event, _editor = setup
    campaign = _draft(db, client, setup)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/clubs")})
    login(client, make_user(db, library, Role.STAFF))
    page = f"/campaigns/{campaign.id}"
    html = client.get(page).get_data(as_text=True)
    assert "Kom til forfatteraften" in html and "Send test" not in html
    assert _json(client, f"{page}/preview", {}, page).status_code == 200
    assert _json(client, f"{page}/autosave", {"version": 1}, page).status_code == 403


def test_only_drafts_can_be_changed(client, db, setup):
    campaign = _draft(db, client, setup)
    campaign.status = "sent"
    campaign.sent_at = datetime(2026, 12, 1, tzinfo=UTC)
    db.session.commit()
    page = f"/campaigns/{campaign.id}"
    response = _json(
        client, f"{page}/autosave", {"subject": "x", "version": campaign.version}, page
    )
    assert response.status_code == 422
    assert "Only drafts" in response.get_json()["error"]["message"]


# ----------------------------------------------------------------- test send


@pytest.fixture
def smtp_setup(smtp_app_config, client, db):
    return smtp_app_config


def test_test_send_goes_through_smtp_as_multipart_with_list_headers(
    smtp_setup, smtp_server, client, db, setup
):
    _library, club, _event, _editor = setup
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    _json(
        client,
        f"{page}/autosave",
        {"blocks": [TEXT_BLOCK, *campaign.blocks[1:]], "version": 1},
        page,
    )
    response = client.post(
        f"{page}/test",
        data={
            "csrf_token": csrf_token(client, page),
            "addresses": "redaktion@example.dk, Chef@Example.dk",
            "subscriber_id": "",
        },
    )
    assert response.status_code == 302
    assert "Test sent to" in client.get(page).get_data(as_text=True)
    assert sorted(r for _f, rcpts, _raw in smtp_server.received for r in rcpts) == [
        "Chef@example.dk",
        "redaktion@example.dk",
    ]
    message = smtp_server.messages[0]
    assert message["Subject"] == "[TEST] Kom til forfatteraften"
    assert message["From"] == f"Debatklubben <{club.from_email}>"
    assert message["Reply-To"] == "svar@herning.example.dk"
    assert message["Message-ID"] and message["Date"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.fullmatch(
        r"<(http[^>]+)>", message["List-Unsubscribe"].strip()
    ).group(1)
    assert "/unsubscribe/" in unsubscribe
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.get_payload()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert "Velkommen" in text.get_content() and "Velkommen" in html.get_content()
    assert "Forfatteraften med Anna" in html.get_content()
    # The mail's links lead to the real pages; for an address that is no member
    # the unsubscribe page changes nothing.
    path = unsubscribe.removeprefix("http://klubpost.test")
    assert client.get(path).status_code == 404
    web = re.search(r'href="http://klubpost\.test(/web/[^"]+)"', html.get_content())
    assert web and "Velkommen" in client.get(web.group(1)).get_data(as_text=True)


def test_a_test_to_a_members_own_address_carries_their_links(
    smtp_setup, smtp_server, client, db, setup
):
    _library, club, _event, _editor = setup
    anna = make_subscriber(db, club.library, "anna@example.dk", first_name="Anna")
    join_club(db.session, club, anna, source="t", consent_given=True)
    db.session.commit()
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    client.post(
        f"{page}/test",
        data={"csrf_token": csrf_token(client, page), "addresses": "anna@example.dk"},
    )
    message = smtp_server.messages[0]
    header = message["List-Unsubscribe"].strip()
    path = header[1:-1].removeprefix("http://klubpost.test")
    page_html = client.get(path).get_data(as_text=True)
    assert club.name in page_html


@pytest.mark.parametrize(
    ("addresses", "message"),
    [
        ("not-an-address", "is not an e-mail address"),
        ("a@x.dk, b@x.dk, c@x.dk, d@x.dk, e@x.dk, f@x.dk", "at most 5"),
        ("", "at least one"),
    ],
)
def test_test_send_checks_the_addresses(client, db, setup, addresses, message):
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    response = client.post(
        f"{page}/test",
        data={"csrf_token": csrf_token(client, page), "addresses": addresses},
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert outbox_messages(db) == []


def test_test_send_in_development_lands_in_the_outbox(client, db, setup):
    campaign = _draft(db, client, setup)
    page = f"/campaigns/{campaign.id}"
    client.post(
        f"{page}/test",
        data={"csrf_token": csrf_token(client, page), "addresses": "a@example.dk"},
    )
    (message,) = outbox_messages(db)
    assert message["Subject"] == "[TEST] Kom til forfatteraften"
    outbox = client.get("/outbox/").get_data(as_text=True)
    assert "[TEST] Kom til forfatteraften" in outbox


# ----------------------------------------------------------------- web version


def test_web_version_is_public_neutral_and_unguessable(client, app, db, setup):
    _library, club, _event, _editor = setup
    anna = make_subscriber(db, club.library, "anna@example.dk", first_name="Annabella")
    join_club(db.session, club, anna, source="t", consent_given=True)
    db.session.commit()
    campaign = _draft(db, client, setup)
    from campaigns.compose import web_url

    with app.test_request_context():
        url = web_url(campaign).removeprefix("http://klubpost.test")
    client.post("/logout", data={"csrf_token": csrf_token(client, "/clubs")})
    response = client.get(url)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Forfatteraften med Anna" in html
    assert "Annabella" not in html and "anna@example.dk" not in html
    assert response.headers["X-Robots-Tag"] == "noindex"
    assert client.get(f"/web/{campaign.id}").status_code == 404
    assert client.get(url[:-2] + "xx").status_code == 404


def test_public_archive_lists_sent_newsletters_when_the_club_allows(client, db, setup):
    library, club, _event, editor = setup
    sent = services.create_campaign(
        db.session, club, editor, {"kind": "regular", "subject": "December-brevet"}
    )
    sent.status, sent.sent_at = "sent", datetime(2026, 12, 1, 9, tzinfo=UTC)
    services.create_campaign(
        db.session, club, editor, {"kind": "regular", "subject": "Hemmelig kladde"}
    )
    db.session.commit()
    url = f"/archive/{library.slug}/{club.slug}"
    assert client.get(url).status_code == 404
    admin = make_user(db, library, Role.ADMIN)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/clubs")})
    login(client, admin)
    edit = f"/clubs/{club.id}/edit"
    form = {
        "name": club.name,
        "slug": club.slug,
        "description": "",
        "language": "da",
        "from_name": club.from_name,
        "from_email": club.from_email,
        "reply_to": "",
        "double_opt_in": "y",
        "tracking_consent_required": "y",  # as the page shows it
        "consent_text": "Ja tak",
        "tracking_text": "Ja",
        "public_archive": "y",
        "csrf_token": csrf_token(client, edit),
    }
    assert client.post(edit, data=form).status_code == 302
    page = client.get(url).get_data(as_text=True)
    assert "December-brevet" in page and "Hemmelig kladde" not in page
    link = re.search(r'href="(/web/[^"]+)"', page).group(1)
    assert "December-brevet" in client.get(link).get_data(as_text=True)


# ----------------------------------------------------------------- templates


def test_editor_makes_a_library_template_from_a_builtin_and_uses_it(client, db, setup):
    _library, club, event, _editor = setup
    form = client.get("/templates/new?from=regular-da").get_data(as_text=True)
    assert "mj-" in form or "mjml" in form
    source = services.builtin_by_key("regular-da").source.replace(
        "</mjml>", "<!-- herning --></mjml>"
    )
    response = client.post(
        "/templates/new",
        data={
            "name": "Herning-brev",
            "kind": "regular",
            "language": "da",
            "source": source,
            "csrf_token": csrf_token(client, "/templates/new"),
        },
    )
    assert response.status_code == 302
    template = db.session.scalar(select(Template))
    assert template.library_id == club.library_id and template.consortium_id is None
    assert "Herning-brev" in client.get("/templates").get_data(as_text=True)
    campaign = _draft(
        db, client, setup, kind="regular", template=f"template:{template.id}"
    )
    assert campaign.template_id == template.id and campaign.template_key is None
    page = f"/campaigns/{campaign.id}"
    body = {"blocks": [TEXT_BLOCK]}
    assert _json(client, f"{page}/preview", body, page).status_code == 200


def test_consortium_shares_templates_with_members_only(client, app, db):
    consortium = Consortium(name="Nord", slug="nord")
    db.session.add(consortium)
    db.session.commit()
    member = make_library(db, consortium_id=consortium.id)
    outsider = make_library(db, slug="utrecht")
    admin = make_user(db, None, Role.CONSORTIUM_ADMIN, consortium_id=consortium.id)
    login(client, admin)
    response = client.post(
        "/templates/new",
        data={
            "name": "Fælles skabelon",
            "kind": "regular",
            "language": "da",
            "source": services.builtin_by_key("regular-da").source,
            "shared": "y",
            "csrf_token": csrf_token(client, "/templates/new"),
        },
    )
    assert response.status_code == 302
    shared = db.session.scalar(select(Template))
    assert shared.consortium_id == consortium.id and shared.library_id is None

    member_client = app.test_client()
    login(member_client, make_user(db, member, Role.EDITOR))
    assert "Fælles skabelon" in member_client.get("/templates").get_data(as_text=True)
    assert member_client.get(f"/templates/{shared.id}").status_code == 200
    # A member library's editor uses it but cannot change it.
    token = csrf_token(member_client, "/templates")
    response = member_client.post(
        f"/templates/{shared.id}",
        data={
            "name": "Mit",
            "kind": "regular",
            "language": "da",
            "source": "x",
            "csrf_token": token,
        },
    )
    assert response.status_code == 403
    outsider_client = app.test_client()
    login(outsider_client, make_user(db, outsider, Role.EDITOR))
    assert "Fælles skabelon" not in outsider_client.get("/templates").get_data(
        as_text=True
    )
    assert outsider_client.get(f"/templates/{shared.id}").status_code == 404


def test_a_librarys_own_template_is_its_alone(client, app, db, setup):
    library, _club, _event, editor = setup
    own = Template(
        library_id=library.id,
        name="Kun vores",
        kind="regular",
        language="da",
        source="<mjml></mjml>",
    )
    db.session.add(own)
    db.session.commit()
    other = make_library(db, slug="utrecht")
    other_club = make_club(db, other)
    other_client = app.test_client()
    login(other_client, make_user(db, other, Role.EDITOR))
    assert other_client.get(f"/templates/{own.id}").status_code == 404
    with pytest.raises(services.CampaignError):
        services.create_campaign(
            db.session,
            other_club,
            None,
            {"kind": "regular", "template": f"template:{own.id}"},
        )


def test_a_card_whose_event_was_deleted_is_named_and_left_out(client, app, db, setup):
    _library, _club, event, _editor = setup
    campaign = _draft(db, client, setup)
    db.session.delete(event)
    db.session.commit()
    page = f"/campaigns/{campaign.id}"
    response = _json(client, f"{page}/preview", {}, page)
    assert response.status_code == 422
    assert "Block 2" in response.get_json()["error"]["message"]
    # What was saved still renders (the web version), without the card.
    from campaigns import compose

    with app.test_request_context():
        result = compose.preview(db.session, campaign, compose.draft_of(campaign))
    assert any("Block 2" in w for w in result["warnings"])


def test_editor_changes_and_deletes_own_template_and_a_draft(client, db, setup):
    library, club, _event, _editor = setup
    own = Template(
        library_id=library.id,
        name="Vores",
        kind="regular",
        language="da",
        source=services.builtin_by_key("regular-da").source,
    )
    db.session.add(own)
    db.session.commit()
    page = f"/templates/{own.id}"
    form = {
        "name": "Vores nye",
        "kind": "regular",
        "language": "da",
        "source": own.source,
        "csrf_token": csrf_token(client, page),
    }
    assert client.post(page, data={**form, "source": ""}).status_code == 400
    assert client.post(page, data=form).status_code == 302
    db.session.refresh(own)
    assert own.name == "Vores nye"
    campaign = _draft(db, client, setup, kind="regular", template=f"template:{own.id}")
    token = csrf_token(client, "/templates")
    assert client.post(f"{page}/delete", data={"csrf_token": token}).status_code == 302
    db.session.refresh(campaign)
    # The draft falls back to the kind's built-in template and still renders.
    assert campaign.template_id is None
    editor_page = f"/campaigns/{campaign.id}"
    body = {"blocks": [TEXT_BLOCK]}
    response = _json(client, f"{editor_page}/preview", body, editor_page)
    assert response.status_code == 200
    assert 'value="builtin:regular-da" selected' in client.get(editor_page).get_data(
        as_text=True
    )
    response = client.post(
        f"{editor_page}/delete", data={"csrf_token": csrf_token(client, editor_page)}
    )
    assert response.status_code == 302
    assert db.session.get(Campaign, campaign.id) is None
