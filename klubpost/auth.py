"""Who is asking, and what they may see: log-in sessions, API tokens, roles.

Every view reaches data through `allowed_library_ids` / `current_library`, so one
library's staff can never see another library's data.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable
from typing import Any

from flask import abort, g, request, session
from flask_login import LoginManager, current_user
from sqlalchemy import select

from accounts.models import ApiToken, Library, Role, User
from klubpost.db import db, get_by_id, utcnow

login_manager = LoginManager()
login_manager.login_view = "accounts.login"
login_manager.session_protection = "strong"

TOKEN_PREFIX = "kp_"


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Load the logged-in user for Flask-Login."""
    if not user_id.isdigit():
        return None
    return db.session.get(User, int(user_id))


def acting_user() -> User | None:
    """The user behind this request: the API token's owner, else the session's."""
    if "api_user" in g:
        return g.api_user
    return current_user if current_user.is_authenticated else None


def new_api_token() -> tuple[str, str]:
    """A fresh token and its hash; only the hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """SHA-256 of a token (random tokens need no salt or stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


def user_for_token(header: str | None) -> User | None:
    """Find the active user behind an `Authorization: Bearer kp_...` header."""
    if not header or not header.startswith("Bearer "):
        return None
    token = header.removeprefix("Bearer ").strip()
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    api_token = db.session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )
    if api_token is None or not api_token.user.active:
        return None
    api_token.last_used_at = utcnow()
    db.session.commit()
    return api_token.user


def allowed_library_ids(user: User) -> list[int]:
    """The libraries a user may see: their own, or all of their consortium's."""
    if user.role == Role.CONSORTIUM_ADMIN:
        return list(
            db.session.scalars(
                select(Library.id).where(Library.consortium_id == user.consortium_id)
            )
        )
    return [user.library_id] if user.library_id else []


def current_library() -> Library:
    """The library the current user is working in (consortium admins can switch)."""
    user = acting_user()
    if user is None:
        abort(401)
    if user.role != Role.CONSORTIUM_ADMIN:
        return user.library
    allowed = allowed_library_ids(user)
    if not allowed:
        abort(404)
    chosen = session.get("library_id")
    return db.session.get(Library, chosen if chosen in allowed else allowed[0])


def role_required(role: Role) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Refuse (403) users whose role does not include `role`; 401 when not logged in."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = acting_user()
            if user is None:
                if request.blueprint == "api":
                    abort(401)
                return login_manager.unauthorized()
            if not user.has_role(role):
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def get_owned(model: type, object_id: int, library_attr: str = "library_id") -> Any:
    """A library-owned row, or 404 if missing or another library's."""
    obj = get_by_id(db.session, model, object_id)
    user = acting_user()
    if obj is None or user is None:
        abort(404)
    if getattr(obj, library_attr) not in allowed_library_ids(user):
        abort(404)
    return obj
