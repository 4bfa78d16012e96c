"""Log-in, staff users, API tokens and (for consortium admins) library switching."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from accounts import services
from accounts.forms import DkimForm, LibraryForm, LoginForm, TokenForm, UserForm
from accounts.models import ApiToken, Library, Role, User
from klubpost.auth import allowed_library_ids, current_library, get_owned, role_required
from klubpost.db import db, get_by_id, utcnow
from subscribers.models import Club

bp = Blueprint("accounts", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the log-in form and log the user in."""
    form = LoginForm()
    failed = False
    if form.validate_on_submit():
        user = services.authenticate(db.session, form.email.data, form.password.data)
        if user is not None:
            login_user(user)
            return redirect(_safe_next(request.args.get("next")))
        flash(_("Wrong e-mail address or password."), "error")
        failed = True
    status = 400 if failed or form.errors else 200
    return render_template("accounts/login.html", form=form), status


def _safe_next(target: str | None) -> str:
    """Only follow `next` to a path on this site (no open redirect).

    Browsers drop tabs and line breaks from a Location and read a backslash as
    a slash, so "/\t/evil.example" would lead off-site: a target with any
    control character, whitespace or backslash is not followed, nor one whose
    parsed form names a scheme or host.
    """
    if (
        target
        and target.startswith("/")
        and not target.startswith("//")
        and target.isprintable()
        and not any(c.isspace() or c == "\\" for c in target)
    ):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("subscribers.clubs")


@bp.post("/logout")
@login_required
def logout():
    """Log out."""
    logout_user()
    return redirect(url_for("accounts.login"))


@bp.get("/")
@login_required
def home():
    """The start page: the library's clubs."""
    return redirect(url_for("subscribers.clubs"))


@bp.post("/library")
@role_required(Role.CONSORTIUM_ADMIN)
def switch_library():
    """Let a consortium admin choose which library to work in."""
    library_id = request.form.get("library_id", type=int)
    if library_id not in allowed_library_ids(current_user):
        abort(404)
    session["library_id"] = library_id
    return redirect(url_for("subscribers.clubs"))


@bp.route("/library/settings", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def library_settings():
    """The library's own settings: name, mail domain, time zone, language, IPs."""
    library = current_library()
    form = LibraryForm(obj=library)
    if form.validate_on_submit():
        domain = form.domain.data.strip().lower()
        branding = _branding(form, library)
        if not services.DOMAIN_RE.match(domain):
            form.domain.errors.append(_("Enter a domain name such as bibliotek.dk."))
        elif branding is not None:
            library.name, library.domain = form.name.data.strip(), domain
            library.timezone, library.language = form.timezone.data, form.language.data
            library.record_ip = form.record_ip.data
            library.logo_url, library.primary_color, library.accent_color = branding
            db.session.commit()
            flash(_("Library settings saved."), "success")
            return redirect(url_for("accounts.library_settings"))
    status = 400 if form.errors else 200
    return render_template("accounts/library.html", form=form, library=library), status


@bp.route("/library/dkim", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def library_dkim():
    """The library's DKIM key: generate or paste one, see the DNS record, remove it."""
    from campaigns import dkim

    library = current_library()
    form = DkimForm(
        domain=library.dkim_domain or library.domain,
        selector=library.dkim_selector or f"kp{utcnow():%Y}",
    )
    if form.validate_on_submit():
        pem = (form.private_key.data or "").strip().encode() or None
        if request.form.get("action") == "generate":
            pem = dkim.generate_pem()
        try:
            dkim.configure(library, form.domain.data, form.selector.data, pem)
        except dkim.DkimError as exc:
            getattr(form, exc.field).errors.append(exc.message)
        else:
            db.session.commit()
            flash(_("DKIM key saved. Publish the DNS record below."), "success")
            return redirect(url_for("accounts.library_dkim"))
    clubs = db.session.scalars(select(Club).where(Club.library_id == library.id))
    uncovered = [club for club in clubs if not dkim.covers(library, club.from_email)]
    status = 400 if form.errors else 200
    return render_template(
        "accounts/dkim.html",
        form=form,
        library=library,
        dns_name=dkim.dns_name(library),
        dns_record=dkim.dns_record(library),
        uncovered=uncovered if library.dkim_private_key else [],
    ), status


@bp.post("/library/dkim/delete")
@role_required(Role.ADMIN)
def delete_dkim():
    """Stop signing the library's mail and forget its key."""
    from campaigns import dkim

    dkim.disable(current_library())
    db.session.commit()
    flash(_("DKIM signing is off; the key was deleted."), "success")
    return redirect(url_for("accounts.library_dkim"))


def _branding(
    form: LibraryForm, library: Library
) -> tuple[str | None, str, str] | None:
    """The newsletters' logo and colours from the form, or None (errors on fields).

    A colour left empty keeps the library's current one.
    """
    from campaigns.services import CampaignError, check_color, check_url

    try:
        return (
            check_url(form.logo_url.data, "logo_url"),
            check_color(
                form.primary_color.data or library.primary_color, "primary_color"
            ),
            check_color(form.accent_color.data or library.accent_color, "accent_color"),
        )
    except CampaignError as exc:
        getattr(form, exc.field).errors.append(exc.message)
        return None


@bp.get("/users")
@role_required(Role.ADMIN)
def users():
    """List the library's staff users."""
    library = current_library()
    rows = db.session.scalars(
        select(User).where(User.library_id == library.id).order_by(User.name)
    ).all()
    return render_template("accounts/users.html", users=rows, library=library)


@bp.route("/users/new", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def new_user():
    """Add a staff user to the library."""
    form = UserForm()
    form.password.flags.required = True
    if form.validate_on_submit():
        if not form.password.data:
            form.password.errors.append(_("A new user needs a password."))
        else:
            try:
                services.create_user(
                    db.session,
                    email=form.email.data,
                    name=form.name.data,
                    password=form.password.data,
                    role=Role(form.role.data),
                    library=current_library(),
                    language=form.language.data or None,
                )
            except services.AccountError as exc:
                getattr(form, exc.field or "email").errors.append(str(exc))
            else:
                db.session.commit()
                flash(_("User added."), "success")
                return redirect(url_for("accounts.users"))
    status = 400 if form.errors else 200
    return render_template("accounts/user_form.html", form=form, user=None), status


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def edit_user(user_id: int):
    """Change a staff user's name, role, language, password or access."""
    user = get_owned(User, user_id)
    form = UserForm(obj=user)
    if request.method == "GET":
        form.language.data = user.language or ""
    if form.validate_on_submit():
        clash = db.session.scalar(
            select(User.id).where(
                User.email.ilike(form.email.data.strip()), User.id != user.id
            )
        )
        if clash:
            form.email.errors.append(
                _("A user with this e-mail address already exists.")
            )
        elif user.id == current_user.id and (
            Role(form.role.data) != user.role or not form.active.data
        ):
            form.role.errors.append(
                _("You cannot lower your own role or lock yourself out.")
            )
        else:
            user.name, user.email = form.name.data.strip(), form.email.data.strip()
            user.role, user.active = Role(form.role.data), form.active.data
            user.language = form.language.data or None
            if form.password.data:
                services.set_password(user, form.password.data)
            db.session.commit()
            flash(_("User saved."), "success")
            return redirect(url_for("accounts.users"))
    status = 400 if form.errors else 200
    return render_template("accounts/user_form.html", form=form, user=user), status


@bp.route("/account/tokens", methods=["GET", "POST"])
@login_required
def tokens():
    """A user's own API tokens: create (shown once) and list."""
    form = TokenForm()
    new_token = None
    if form.validate_on_submit():
        _token, new_token = services.issue_token(
            db.session, current_user, form.name.data
        )
        db.session.commit()
    rows = db.session.scalars(
        select(ApiToken)
        .where(ApiToken.user_id == current_user.id)
        .order_by(ApiToken.id.desc())
    ).all()
    status = 400 if form.errors else 200
    return render_template(
        "accounts/tokens.html", form=form, tokens=rows, new_token=new_token
    ), status


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    """Revoke one of the user's own tokens."""
    api_token = get_by_id(db.session, ApiToken, token_id)
    if api_token is None or api_token.user_id != current_user.id:
        abort(404)
    services.revoke_token(api_token)
    db.session.commit()
    flash(_("Token revoked."), "success")
    return redirect(url_for("accounts.tokens"))


@bp.app_context_processor
def inject_libraries():
    """Give the layout the libraries a consortium admin can switch between."""
    if not has_request_context():  # mails built by the scheduler
        return {}
    if current_user.is_authenticated and current_user.role == Role.CONSORTIUM_ADMIN:
        ids = allowed_library_ids(current_user)
        libraries = db.session.scalars(
            select(Library).where(Library.id.in_(ids)).order_by(Library.name)
        ).all()
        return {"switchable_libraries": libraries, "library": current_library()}
    if current_user.is_authenticated:
        return {"switchable_libraries": [], "library": current_user.library}
    return {}
