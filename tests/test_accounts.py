from accounts.models import ApiToken, Role, User
from conftest import PASSWORD, csrf_token, login, make_library, make_user


def test_login_with_right_password_and_logout(client, db):
    library = make_library(db)
    user = make_user(db, library, Role.EDITOR)
    login(client, user)
    assert client.get("/clubs").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/clubs")})
    assert response.status_code == 302
    assert client.get("/clubs").status_code == 302  # back to the log-in page


def test_wrong_password_is_refused_with_a_message(client, db):
    user = make_user(db, make_library(db))
    response = client.post(
        "/login",
        data={
            "email": user.email,
            "password": "wrong",
            "csrf_token": csrf_token(client),
        },
    )
    assert response.status_code == 400
    assert "Wrong e-mail address or password" in response.get_data(as_text=True)


def test_passwords_are_stored_hashed(db):
    user = make_user(db, make_library(db))
    assert PASSWORD not in user.password_hash
    assert user.password_hash.startswith("pbkdf2:")


def test_login_without_csrf_token_is_refused(client, db):
    user = make_user(db, make_library(db))
    response = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    assert client.get("/clubs").status_code == 302


def test_next_parameter_cannot_redirect_off_site(client, db):
    user = make_user(db, make_library(db))
    targets = (
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "/%09/evil.example",  # a tab, dropped by browsers: "//evil.example"
        "/%0a/evil.example",  # a line break can't be a header either
        "/%0d/evil.example",
        "/%20/evil.example",
    )
    for target in targets:
        response = client.post(
            f"/login?next={target}",
            data={
                "email": user.email,
                "password": PASSWORD,
                "csrf_token": csrf_token(client),
            },
        )
        assert response.status_code == 302, target
        assert response.location == "/clubs", target
        client.post("/logout", data={"csrf_token": csrf_token(client, "/clubs")})
    response = client.post(
        "/login?next=/campaigns%3Fpage%3D2",
        data={
            "email": user.email,
            "password": PASSWORD,
            "csrf_token": csrf_token(client),
        },
    )
    assert response.location == "/campaigns?page=2"  # a path of this site is fine


def test_staff_reads_but_cannot_manage_users(client, db):
    library = make_library(db)
    staff = make_user(db, library, Role.STAFF)
    login(client, staff)
    assert client.get("/clubs").status_code == 200
    assert client.get("/users").status_code == 403


def test_admin_adds_a_user_who_can_log_in(client, db):
    library = make_library(db)
    admin = make_user(db, library, Role.ADMIN)
    login(client, admin)
    response = client.post(
        "/users/new",
        data={
            "name": "Ny Redaktør",
            "email": "ny@herning.example.dk",
            "role": "editor",
            "language": "da",
            "password": "long enough password",
            "csrf_token": csrf_token(client, "/users/new"),
        },
    )
    assert response.status_code == 302
    user = db.session.scalar(
        db.select(User).where(User.email == "ny@herning.example.dk")
    )
    assert user.role == Role.EDITOR and user.library_id == library.id


def test_admin_cannot_lock_themselves_out(client, db):
    library = make_library(db)
    admin = make_user(db, library, Role.ADMIN)
    login(client, admin)
    response = client.post(
        f"/users/{admin.id}",
        data={
            "name": admin.name,
            "email": admin.email,
            "role": "staff",
            "language": "",
            "csrf_token": csrf_token(client, f"/users/{admin.id}"),
        },
    )
    assert response.status_code == 400
    db.session.refresh(admin)
    assert admin.role == Role.ADMIN


def test_api_token_is_shown_once_stored_hashed_and_revocable(client, db):
    library = make_library(db)
    user = make_user(db, library, Role.EDITOR)
    login(client, user)
    page = client.post(
        "/account/tokens",
        data={"name": "script", "csrf_token": csrf_token(client, "/account/tokens")},
    ).get_data(as_text=True)
    token = page.split('id="new-token">')[1].split("<")[0]
    assert token.startswith("kp_")
    stored = db.session.scalar(db.select(ApiToken))
    assert token not in stored.token_hash and stored.prefix == token[:10]

    api = client.application.test_client()  # no session cookie: token only
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/api/libraries", headers=headers).status_code == 200
    assert (
        api.get(
            "/api/libraries", headers={"Authorization": "Bearer kp_forged"}
        ).status_code
        == 401
    )

    client.post(
        f"/account/tokens/{stored.id}/revoke",
        data={"csrf_token": csrf_token(client, "/account/tokens")},
    )
    response = api.get("/api/libraries", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_admin_turns_on_ip_recording_and_validates_the_domain(client, db):
    library = make_library(db)
    login(client, make_user(db, library, Role.ADMIN))
    form = {
        "name": "Herning Bibliotekerne",
        "domain": "not a domain",
        "timezone": "Europe/Copenhagen",
        "language": "da",
        "record_ip": "y",
    }
    token = csrf_token(client, "/library/settings")
    response = client.post("/library/settings", data={**form, "csrf_token": token})
    assert response.status_code == 400
    assert "Enter a domain name" in response.get_data(as_text=True)
    db.session.refresh(library)
    assert library.record_ip is False
    form["domain"] = "herning-bib.dk"
    client.post("/library/settings", data={**form, "csrf_token": token})
    db.session.refresh(library)
    assert library.record_ip is True and library.domain == "herning-bib.dk"


def test_editor_cannot_change_library_settings(client, db):
    library = make_library(db)
    login(client, make_user(db, library, Role.EDITOR))
    assert client.get("/library/settings").status_code == 403
