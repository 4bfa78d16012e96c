"""Staff accounts and API tokens: plain functions over a session."""

from __future__ import annotations

import re

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from accounts.models import ApiToken, Library, Role, User
from klubpost.auth import new_api_token
from klubpost.db import utcnow

# A host name such as bibliotek.dk (lower case, at least two labels).
DOMAIN_RE = re.compile(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)

MIN_PASSWORD_LENGTH = 10


class AccountError(Exception):
    """A request about accounts that cannot be done; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def hash_password(password: str) -> str:
    """Hash a password with the configured method (scrypt by default)."""
    return generate_password_hash(
        password, method=current_app.config["PASSWORD_HASH_METHOD"]
    )


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with this e-mail and password, or None."""
    user = session.scalar(
        select(User).where(func.lower(User.email) == email.strip().lower())
    )
    if user is None or not user.active:
        # Spend the same time as a real check, so timing does not reveal accounts.
        check_password_hash(hash_password("x"), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


def create_user(
    session: Session,
    *,
    email: str,
    name: str,
    password: str,
    role: Role,
    library: Library | None = None,
    consortium_id: int | None = None,
    language: str | None = None,
) -> User:
    """Add a staff user; the e-mail must be new and the password long enough."""
    email = email.strip()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            f"The password needs at least {MIN_PASSWORD_LENGTH} characters.", "password"
        )
    if session.scalar(select(User.id).where(func.lower(User.email) == email.lower())):
        raise AccountError("A user with this e-mail address already exists.", "email")
    user = User(
        email=email,
        name=name.strip(),
        password_hash=hash_password(password),
        role=role,
        library_id=library.id if library else None,
        consortium_id=consortium_id,
        language=language,
    )
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    """Change a user's password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            f"The password needs at least {MIN_PASSWORD_LENGTH} characters.", "password"
        )
    user.password_hash = hash_password(password)


def issue_token(session: Session, user: User, name: str) -> tuple[ApiToken, str]:
    """Create an API token for `user`; the clear token is returned only this once."""
    token, token_hash = new_api_token()
    api_token = ApiToken(
        user_id=user.id,
        name=name.strip() or "token",
        token_hash=token_hash,
        prefix=token[:10],
    )
    session.add(api_token)
    session.flush()
    return api_token, token


def revoke_token(api_token: ApiToken) -> None:
    """Revoke a token; it stops working at once."""
    if api_token.revoked_at is None:
        api_token.revoked_at = utcnow()
