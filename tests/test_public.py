"""The public pages, driven as a person (and a mail client) would."""

from datetime import timedelta

from itsdangerous import URLSafeSerializer
from sqlalchemy import select

from accounts.models import Library
from conftest import (
    confirm_from_mail,
    csrf_token,
    links_in,
    make_club,
    make_library,
    make_subscriber,
    outbox_messages,
)
from klubpost.security import sign
from subscribers.models import Membership, MembershipStatus, Subscriber, Suppression
from subscribers.public import unsubscribe_token
from subscribers.services import join_club

BASE = "http://klubpost.test"


def _subscribe(client, path, **data):
    data.setdefault("csrf_token", csrf_token(client, path))
    return client.post(path, data=data)


def test_double_opt_in_from_form_to_confirmed_over_smtp(
    smtp_app_config, client, db, smtp_server
):
    library = make_library(db, record_ip=True)
    make_club(db, library, name="Her er debat")
    path = "/join/herning/debat"
    page = client.get(path).get_data(as_text=True)
    assert (
        "Ja tak, send mig nyhedsbreve fra Her er debat" in page
    )  # Danish consent text
    response = _subscribe(
        client,
        path,
        email="Ole@Example.dk",
        first_name="Ole",
        consent="y",
        tracking_consent="y",
    )
    assert response.status_code == 200
    assert "indbakke" in response.get_data(
        as_text=True
    ) or "inbox" in response.get_data(as_text=True)
    membership = db.session.scalar(select(Membership))
    assert membership.status == MembershipStatus.UNCONFIRMED
    assert membership.consent_source == "form:debat"
    assert membership.consent_text.version == 1
    assert membership.tracking_consent is True
    assert (
        membership.ip_truncated == "127.0.0.0"
    )  # truncated, and only because the library asked

    (mail,) = smtp_server.messages
    confirm = next(link for link in links_in(mail) if "/confirm/" in link)
    assert confirm.startswith(BASE)
    assert (
        "Ole@example.dk" not in confirm
        and "ole" not in confirm.lower().split("/confirm/")[1]
    )
    client.get(confirm.removeprefix(BASE))  # what a mail scanner does
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.UNCONFIRMED
    confirm_from_mail(client, mail)
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.CONFIRMED and membership.confirmed_at


def test_no_ip_is_kept_unless_the_library_asks(client, db):
    library = make_library(db)
    make_club(db, library)
    _subscribe(client, "/join/herning/debat", email="a@example.dk", consent="y")
    assert db.session.scalar(select(Membership)).ip_truncated is None


def test_form_without_consent_is_refused_and_nothing_is_stored(client, db):
    make_club(db, make_library(db))
    response = _subscribe(client, "/join/herning/debat", email="a@example.dk")
    assert response.status_code == 400
    assert db.session.scalar(select(Subscriber)) is None


def test_bad_and_huge_input_is_refused_cleanly(client, db):
    make_club(db, make_library(db))
    for email in ("nope", "a@b", "x" * 400 + "@example.dk", ""):
        response = _subscribe(client, "/join/herning/debat", email=email, consent="y")
        assert response.status_code == 400, email
    response = _subscribe(
        client,
        "/join/herning/debat",
        email="a@example.dk",
        first_name="x" * 5000,
        consent="y",
    )
    assert response.status_code == 400
    assert db.session.scalar(select(Subscriber)) is None
    assert client.get("/join/herning/no-such-club").status_code == 404
    assert (
        client.post(
            "/join/herning/debat", data={"email": "a@example.dk", "consent": "y"}
        ).status_code
        == 400
    )


def test_honeypot_field_stores_nothing(client, db):
    make_club(db, make_library(db))
    response = _subscribe(
        client,
        "/join/herning/debat",
        email="bot@example.dk",
        consent="y",
        website="http://spam",
    )
    assert response.status_code == 200
    assert db.session.scalar(select(Subscriber)) is None


def test_signing_up_twice_reveals_nothing_and_sends_one_more_confirmation(client, db):
    make_club(db, make_library(db))
    first = _subscribe(client, "/join/herning/debat", email="a@example.dk", consent="y")
    # Ten minutes on, the mail may have been lost: a new sign-up sends another.
    membership = db.session.scalar(select(Membership))
    membership.submitted_at -= timedelta(minutes=11)
    db.session.commit()
    again = _subscribe(client, "/join/herning/debat", email="a@example.dk", consent="y")
    assert again.status_code == 200
    assert again.get_data(as_text=True) == first.get_data(as_text=True)
    assert len(outbox_messages(db)) == 2
    assert db.session.scalar(select(Membership)).status == MembershipStatus.UNCONFIRMED


def test_repeated_sign_ups_send_one_mail_per_ten_minutes_and_say_so(client, db):
    library = make_library(db)
    make_club(db, library)
    make_club(db, library, slug="familie")
    pages = [
        _subscribe(client, "/join/herning/debat", email="a@example.dk", consent="y")
        for _ in range(5)
    ]
    assert len(outbox_messages(db)) == 1
    unknown = _subscribe(
        client, "/join/herning/debat", email="b@example.dk", consent="y"
    )
    # The same page, whether a mail went or not, known address or not.
    assert {p.status_code for p in pages} == {200}
    assert {p.get_data(as_text=True) for p in pages} == {unknown.get_data(as_text=True)}
    # The club speaks Danish: "at most one confirmation mail every 10 minutes".
    assert "højst én bekræftelsesmail hvert 10. minut" in pages[0].get_data(
        as_text=True
    )
    # Another club's sign-up is its own.
    _subscribe(client, "/join/herning/familie", email="a@example.dk", consent="y")
    assert [m["To"] for m in outbox_messages(db)] == [
        "a@example.dk",
        "b@example.dk",
        "a@example.dk",
    ]


def test_an_erased_address_comes_back_to_a_single_opt_in_club_only_confirmed(
    client, db
):
    from subscribers.services import erase

    library = make_library(db)
    make_club(db, library, double_opt_in=False)
    erase(db.session, make_subscriber(db, library))
    db.session.commit()
    response = _subscribe(
        client, "/join/herning/debat", email="anna@example.dk", consent="y"
    )
    assert response.status_code == 200
    membership = db.session.scalar(select(Membership))
    assert membership.status == MembershipStatus.UNCONFIRMED
    assert db.session.scalar(select(Suppression)) is not None  # still erased
    (mail,) = outbox_messages(db)
    confirm_from_mail(client, mail)
    assert db.session.scalar(select(Membership)).status == MembershipStatus.CONFIRMED
    assert db.session.scalar(select(Suppression)) is None


def test_tampered_and_forged_links_get_a_clear_400(client, db):
    club = make_club(db, make_library(db))
    subscriber = make_subscriber(db, club.library)
    membership = join_club(db.session, club, subscriber, source="t", consent_given=True)
    db.session.commit()
    good = unsubscribe_token(subscriber.id, club.id)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    # Signed with a key that is not ours.
    forged = URLSafeSerializer("not-our-key", salt="klubpost.manage").dumps(
        [subscriber.id]
    )
    for url in (
        f"/unsubscribe/{tampered}",
        f"/unsubscribe/{sign('manage', subscriber.id)}",
        f"/confirm/{sign('unsubscribe', subscriber.id, club.id)}",
        f"/preferences/{good}",
        f"/preferences/{forged}",
        "/preferences/WzFd.forged",
        "/confirm/" + "A" * 300,
    ):
        response = client.get(url)
        assert response.status_code == 400, url
        assert "not valid" in response.get_data(as_text=True)
    assert (
        client.post(
            f"/unsubscribe/{tampered}", data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 400
    )
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.CONFIRMED


def test_unsubscribe_get_changes_nothing_post_unsubscribes(client, db):
    club = make_club(db, make_library(db))
    subscriber = make_subscriber(db, club.library)
    membership = join_club(db.session, club, subscriber, source="t", consent_given=True)
    db.session.commit()
    path = f"/unsubscribe/{unsubscribe_token(subscriber.id, club.id)}"
    page = client.get(path)
    assert page.status_code == 200 and "<form" in page.get_data(as_text=True)
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.CONFIRMED
    # A POST from the page must carry its CSRF token.
    assert client.post(path, data={}).status_code == 400
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.CONFIRMED
    response = client.post(path, data={"csrf_token": csrf_token(client, path)})
    assert response.status_code == 200
    db.session.refresh(membership)
    assert (
        membership.status == MembershipStatus.UNSUBSCRIBED
        and membership.unsubscribed_at
    )


def test_one_click_unsubscribe_needs_no_cookie_and_answers_200(app, db):
    club = make_club(db, make_library(db))
    subscriber = make_subscriber(db, club.library)
    membership = join_club(db.session, club, subscriber, source="t", consent_given=True)
    db.session.commit()
    fresh = app.test_client(use_cookies=False)
    response = fresh.post(
        f"/unsubscribe/{unsubscribe_token(subscriber.id, club.id)}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert response.location is None
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.UNSUBSCRIBED
    # Mail clients may retry: still 200.
    again = fresh.post(
        f"/unsubscribe/{unsubscribe_token(subscriber.id, club.id)}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert again.status_code == 200


def test_preferences_change_name_language_clubs_and_tracking(client, db):
    library = make_library(db)
    debate = make_club(db, library, slug="debat", name="Debat")
    family = make_club(db, library, slug="familie", name="Familie")
    subscriber = make_subscriber(db, library, first_name="Ida")
    join_club(db.session, debate, subscriber, source="t", consent_given=True)
    db.session.commit()
    path = f"/preferences/{sign('manage', subscriber.id)}"
    page = client.get(path)
    assert page.status_code == 200 and "Ida" in page.get_data(as_text=True)
    response = client.post(
        path,
        data={
            "first_name": "Ida Marie",
            "last_name": "Lund",
            "language": "en",
            f"club-{family.id}": "y",
            f"tracking-{family.id}": "y",
            "csrf_token": csrf_token(client, path),
        },
    )
    assert response.status_code == 200
    assert "Your preferences are saved" in response.get_data(
        as_text=True
    )  # now in English
    db.session.refresh(subscriber)
    by_club = {m.club_id: m for m in subscriber.memberships}
    assert subscriber.first_name == "Ida Marie" and subscriber.language == "en"
    assert by_club[debate.id].status == MembershipStatus.UNSUBSCRIBED
    assert by_club[family.id].status == MembershipStatus.CONFIRMED
    assert by_club[family.id].tracking_consent is True
    assert by_club[family.id].consent_source == "preferences"


def test_download_my_data_and_erase_me(client, db):
    library = make_library(db)
    club = make_club(db, library)
    subscriber = make_subscriber(
        db, library, first_name="Ida", attributes={"branch": "Lind"}
    )
    join_club(
        db.session,
        club,
        subscriber,
        source="form:debat",
        consent_given=True,
        own_sign_up=True,
    )
    db.session.commit()
    token = sign("manage", subscriber.id)
    data = client.get(f"/preferences/{token}/data.json")
    assert (
        data.status_code == 200 and "attachment" in data.headers["Content-Disposition"]
    )
    body = data.get_json()
    assert body["email"] == "anna@example.dk" and body["attributes"] == {
        "branch": "Lind"
    }
    assert body["memberships"][0]["consent"]["source"] == "form:debat"
    assert body["memberships"][0]["consent"]["consent_text_version"] == 1

    erase = f"/preferences/{token}/erase"
    assert client.get(erase).status_code == 200
    assert db.session.scalar(select(Subscriber)) is not None  # GET erases nothing
    response = client.post(erase, data={"csrf_token": csrf_token(client, erase)})
    assert response.status_code == 200
    assert db.session.scalar(select(Subscriber)) is None
    assert db.session.scalar(select(Membership)) is None
    suppression = db.session.scalar(select(Suppression))
    assert "anna" not in suppression.email_hash and len(suppression.email_hash) == 64
    assert client.get(f"/preferences/{token}").status_code == 404


def test_erased_person_may_sign_up_again_themselves(client, db):
    library = make_library(db)
    make_club(db, library)
    subscriber = make_subscriber(db, library)
    from subscribers.services import erase

    erase(db.session, subscriber)
    db.session.commit()
    _subscribe(client, "/join/herning/debat", email="anna@example.dk", consent="y")
    mail = outbox_messages(db)[-1]
    confirm_from_mail(client, mail)
    assert db.session.scalar(select(Membership)).status == MembershipStatus.CONFIRMED
    assert db.session.scalar(select(Suppression)) is None


def test_an_erased_person_confirming_on_the_preferences_page_lifts_the_erasure(
    client, db
):
    from subscribers.services import erase

    library = make_library(db)
    club = make_club(db, library)
    erase(db.session, make_subscriber(db, library))
    db.session.commit()
    _subscribe(client, "/join/herning/debat", email="anna@example.dk", consent="y")
    (mail,) = outbox_messages(db)
    path = next(u for u in links_in(mail) if "/preferences/" in u).removeprefix(BASE)
    assert db.session.scalar(select(Suppression)) is not None
    response = client.post(
        path,
        data={
            "first_name": "Anna",
            "last_name": "",
            "language": "da",
            f"club-{club.id}": "y",
            "csrf_token": csrf_token(client, path),
        },
    )
    assert response.status_code == 200
    assert db.session.scalar(select(Membership)).status == MembershipStatus.CONFIRMED
    assert db.session.scalar(select(Suppression)) is None


def test_public_pages_speak_the_clubs_language(client, db):
    library = make_library(db, slug="utrecht", language="nl")
    make_club(db, library, slug="debat", language="nl")
    dutch = client.get("/join/utrecht/debat").get_data(as_text=True)
    assert "Ja, stuur mij nieuwsbrieven" in dutch
    assert db.session.scalar(select(Library)).language == "nl"


def test_garbage_to_every_public_page_is_a_clear_4xx_never_a_500(app, client, db):
    club = make_club(db, make_library(db))
    subscriber = make_subscriber(db, club.library)
    join_club(db.session, club, subscriber, source="t", consent_given=True)
    db.session.commit()
    manage = sign("manage", subscriber.id)
    paths = [
        "/join/herning/debat",
        f"/confirm/{sign('confirm', 999999)}",
        f"/preferences/{manage}",
        f"/preferences/{manage}/erase",
        f"/unsubscribe/{unsubscribe_token(subscriber.id, club.id)}",
        "/preferences/%00%ff",
        "/unsubscribe/" + "x" * 5000,
    ]
    bodies = [
        {"data": b"\x00\xff\xfe" * 1000, "content_type": "application/octet-stream"},
        {"data": '{"email": 1}', "content_type": "application/json"},
        {
            "data": "email=" + "a" * 100_000,
            "content_type": "application/x-www-form-urlencoded",
        },
        {
            "data": "List-Unsubscribe=Nope",
            "content_type": "application/x-www-form-urlencoded",
        },
        {
            "data": "--x\r\nbroken multipart",
            "content_type": "multipart/form-data; boundary=x",
        },
    ]
    for path in paths:
        assert client.get(path).status_code < 500, path
        for body in bodies:
            response = client.post(path, **body)
            assert 400 <= response.status_code < 500, (path, body["content_type"])
    db.session.refresh(subscriber)
    assert subscriber.memberships[0].status == MembershipStatus.CONFIRMED
    assert db.session.scalar(select(Subscriber).where(Subscriber.id == subscriber.id))


def test_preferences_refuse_bad_language_and_huge_names(client, db):
    club = make_club(db, make_library(db))
    subscriber = make_subscriber(db, club.library, first_name="Ida")
    join_club(db.session, club, subscriber, source="t", consent_given=True)
    db.session.commit()
    path = f"/preferences/{sign('manage', subscriber.id)}"
    token = csrf_token(client, path)
    for data in (
        {"first_name": "Ida", "language": "xx"},
        {"first_name": "x" * 1000, "language": "da"},
        {"first_name": "Ida\r\nBcc: x@example.dk", "language": "da"},
    ):
        response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 400, data
    db.session.refresh(subscriber)
    assert subscriber.first_name == "Ida" and subscriber.language == "da"
    assert subscriber.memberships[0].status == MembershipStatus.CONFIRMED
