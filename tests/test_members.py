from sqlalchemy import select

from accounts.models import Role
from conftest import (
    confirm_from_mail,
    csrf_token,
    login,
    make_club,
    make_library,
    make_subscriber,
    make_user,
)
from subscribers.models import ConsentText, Membership, MembershipStatus, Subscriber
from subscribers.services import join_club
from tracking.models import TrackingMode


def _club_form(**overrides):
    data = {
        "name": "Familieklubben",
        "slug": "familie",
        "description": "For børn og voksne",
        "language": "da",
        "from_name": "Familieklubben",
        "from_email": "familie@herning.example.dk",
        "reply_to": "",
        "double_opt_in": "y",
        "tracking_consent_required": "y",
        "consent_text": "Ja tak, send mig nyhedsbreve.",
        "tracking_text": "I må se mine klik.",
    }
    data.update(overrides)
    return data


def test_admin_creates_a_club_with_a_versioned_consent_text(client, db):
    library = make_library(db)
    login(client, make_user(db, library, Role.ADMIN))
    response = client.post(
        "/clubs/new",
        data={**_club_form(), "csrf_token": csrf_token(client, "/clubs/new")},
    )
    assert response.status_code == 302
    club_id = int(response.location.rsplit("/", 1)[1])
    texts = db.session.scalars(
        select(ConsentText).where(ConsentText.club_id == club_id)
    ).all()
    assert texts[-1].text == "Ja tak, send mig nyhedsbreve."

    edit = f"/clubs/{club_id}/edit"
    client.post(
        edit,
        data={
            **_club_form(consent_text="Ny tekst"),
            "csrf_token": csrf_token(client, edit),
        },
    )
    texts = db.session.scalars(
        select(ConsentText)
        .where(ConsentText.club_id == club_id)
        .order_by(ConsentText.version)
    ).all()
    assert [t.text for t in texts][-2:] == ["Ja tak, send mig nyhedsbreve.", "Ny tekst"]


def test_club_form_names_the_bad_field(client, db):
    library = make_library(db)
    make_club(db, library, slug="familie")
    login(client, make_user(db, library, Role.ADMIN))
    response = client.post(
        "/clubs/new",
        data={
            **_club_form(slug="Not a slug!"),
            "csrf_token": csrf_token(client, "/clubs/new"),
        },
    )
    assert response.status_code == 400
    assert "lower-case letters" in response.get_data(as_text=True)
    response = client.post(
        "/clubs/new",
        data={**_club_form(), "csrf_token": csrf_token(client, "/clubs/new")},
    )
    assert response.status_code == 400
    assert "Another club of this library has this slug" in response.get_data(
        as_text=True
    )


def test_admin_sets_tracking_in_the_club_form(client, db):
    library = make_library(db)
    club = make_club(db, library, slug="familie")
    login(client, make_user(db, library, Role.ADMIN))
    edit = f"/clubs/{club.id}/edit"
    page = client.get(edit).get_data(as_text=True)
    assert 'name="tracking_mode"' in page and 'value="off"' in page

    # Per member without asking: the club's choice, but the page says plainly
    # that public libraries need consent for it.
    response = client.post(
        edit,
        data={
            **_club_form(tracking_mode="individual", tracking_consent_required=""),
            "csrf_token": csrf_token(client, edit),
        },
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "counted per member without asking them" in response.get_data(as_text=True)
    db.session.expire_all()
    assert club.tracking_consent_required is False

    response = client.post(
        edit,
        data={
            **_club_form(tracking_mode="off"),
            "csrf_token": csrf_token(client, edit),
        },
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert club.tracking_mode is TrackingMode.OFF


def test_editor_cannot_create_clubs(client, db):
    library = make_library(db)
    login(client, make_user(db, library, Role.EDITOR))
    response = client.post(
        "/clubs/new", data={**_club_form(), "csrf_token": csrf_token(client, "/clubs")}
    )
    assert response.status_code == 403


def test_added_member_gets_a_confirmation_mail_over_smtp(
    smtp_app_config, client, db, smtp_server
):
    library = make_library(db)
    club = make_club(db, library)
    login(client, make_user(db, library, Role.EDITOR))
    url = f"/clubs/{club.id}/members/new"
    response = client.post(
        url,
        data={
            "email": "Mette@Example.DK",
            "first_name": "Mette",
            "language": "da",
            "attributes": "branch = Lind\nchildren = 4, 7",
            "csrf_token": csrf_token(client, url),
        },
    )
    assert response.status_code == 302
    subscriber = db.session.scalar(select(Subscriber))
    assert subscriber.email_key == "mette@example.dk"
    assert subscriber.attributes == {"branch": "Lind", "children": "4, 7"}
    assert subscriber.memberships[0].status == MembershipStatus.UNCONFIRMED

    (mail,) = smtp_server.messages
    assert mail["To"] == "Mette@example.dk"
    assert mail["Message-ID"] and mail["Date"]
    assert "Bekræft" in mail["Subject"] or "confirm" in mail["Subject"].lower()
    page = confirm_from_mail(client, mail)
    assert page.status_code == 200
    db.session.refresh(subscriber.memberships[0])
    assert subscriber.memberships[0].status == MembershipStatus.CONFIRMED


def test_duplicate_address_in_other_case_is_refused(client, db):
    library = make_library(db)
    club = make_club(db, library)
    make_subscriber(db, library, "anna@example.dk")
    subscriber = db.session.scalar(select(Subscriber))
    join_club(db.session, club, subscriber, source="test", consent_given=True)
    db.session.commit()
    login(client, make_user(db, library, Role.EDITOR))
    url = f"/clubs/{club.id}/members/new"
    response = client.post(
        url,
        data={
            "email": "ANNA@example.dk",
            "language": "da",
            "csrf_token": csrf_token(client, url),
        },
    )
    assert response.status_code == 400
    assert "Already a confirmed member" in response.get_data(as_text=True)


def test_invalid_address_is_refused_with_a_clear_message(client, db):
    library = make_library(db)
    club = make_club(db, library)
    login(client, make_user(db, library, Role.EDITOR))
    url = f"/clubs/{club.id}/members/new"
    response = client.post(
        url,
        data={
            "email": "not-an-address",
            "language": "da",
            "csrf_token": csrf_token(client, url),
        },
    )
    assert response.status_code == 400
    assert "Not a valid e-mail address" in response.get_data(as_text=True)
    assert db.session.scalar(select(Subscriber)) is None


def test_member_list_searches_and_pages(client, db):
    library = make_library(db)
    club = make_club(db, library)
    for i in range(60):
        subscriber = make_subscriber(
            db, library, f"person{i:02d}@example.dk", first_name=f"P{i}"
        )
        join_club(db.session, club, subscriber, source="test", consent_given=True)
    make_subscriber(db, library, "zelda@example.dk", first_name="Zelda")
    join_club(
        db.session,
        club,
        db.session.scalar(select(Subscriber).where(Subscriber.first_name == "Zelda")),
        source="t",
        consent_given=True,
    )
    db.session.commit()
    login(client, make_user(db, library, Role.STAFF))
    page1 = client.get(f"/clubs/{club.id}").get_data(as_text=True)
    assert "61 members" in page1 and "Page 1 of 2" in page1
    page2 = client.get(f"/clubs/{club.id}?page=2").get_data(as_text=True)
    assert page2.count("@example.dk</a>") == 11
    found = client.get(f"/clubs/{club.id}?q=zeld").get_data(as_text=True)
    assert "zelda@example.dk" in found and "person01" not in found
    assert client.get(f"/clubs/{club.id}?q=%25").status_code == 200


def test_status_change_follows_the_transition_table(client, db):
    library = make_library(db)
    club = make_club(db, library)
    subscriber = make_subscriber(db, library)
    membership = join_club(db.session, club, subscriber, source="t")
    db.session.commit()
    login(client, make_user(db, library, Role.EDITOR))
    token = csrf_token(client, f"/subscribers/{subscriber.id}")
    client.post(
        f"/memberships/{membership.id}", data={"status": "bounced", "csrf_token": token}
    )
    db.session.refresh(membership)
    assert (
        membership.status == MembershipStatus.UNCONFIRMED
    )  # unconfirmed -> bounced is not allowed
    client.post(
        f"/memberships/{membership.id}",
        data={"status": "confirmed", "csrf_token": token},
    )
    db.session.refresh(membership)
    assert membership.status == MembershipStatus.CONFIRMED


def test_staff_cannot_edit_subscribers(client, db):
    library = make_library(db)
    subscriber = make_subscriber(db, library)
    login(client, make_user(db, library, Role.STAFF))
    url = f"/subscribers/{subscriber.id}"
    response = client.post(
        url,
        data={
            "email": "x@example.dk",
            "language": "da",
            "csrf_token": csrf_token(client, url),
        },
    )
    assert response.status_code == 403
    db.session.refresh(subscriber)
    assert subscriber.email == "anna@example.dk"


def test_erasing_from_the_staff_ui_keeps_only_a_hash(client, db):
    library = make_library(db)
    club = make_club(db, library)
    subscriber = make_subscriber(db, library)
    join_club(db.session, club, subscriber, source="t", consent_given=True)
    db.session.commit()
    login(client, make_user(db, library, Role.EDITOR))
    url = f"/subscribers/{subscriber.id}"
    client.post(
        f"{url}/delete", data={"erase": "1", "csrf_token": csrf_token(client, url)}
    )
    assert db.session.scalar(select(Subscriber)) is None
    assert db.session.scalar(select(Membership)) is None
    url = f"/clubs/{club.id}/members/new"
    response = client.post(
        url,
        data={
            "email": "anna@example.dk",
            "language": "da",
            "csrf_token": csrf_token(client, url),
        },
    )
    assert response.status_code == 400
    assert "erased" in response.get_data(as_text=True)


def test_admin_deletes_a_club_after_typing_its_name(client, db):
    library = make_library(db)
    club = make_club(db, library, name="Familieklubben", slug="familie")
    subscriber = make_subscriber(db, library)
    join_club(db.session, club, subscriber, source="t", consent_given=True)
    db.session.commit()
    login(client, make_user(db, library, Role.ADMIN))
    edit = f"/clubs/{club.id}/edit"
    client.post(
        f"/clubs/{club.id}/delete",
        data={"confirm_name": "wrong", "csrf_token": csrf_token(client, edit)},
    )
    assert db.session.get(type(club), club.id) is not None
    client.post(
        f"/clubs/{club.id}/delete",
        data={"confirm_name": "Familieklubben", "csrf_token": csrf_token(client, edit)},
    )
    db.session.expire_all()
    assert db.session.get(type(club), club.id) is None
    assert db.session.scalar(select(Membership)) is None  # cascaded, on SQLite too
    assert db.session.get(Subscriber, subscriber.id) is not None
