"""Languages: the UI and public pages in Danish, Dutch and English."""

from __future__ import annotations

from flask import Flask, current_app, g, has_request_context, request
from flask_babel import Babel


def select_locale() -> str:
    """The page's language: one a view chose (a club's or subscriber's), else the
    logged-in user's, else the browser's Accept-Language, else English."""
    languages = current_app.config["LANGUAGES"]
    chosen = g.get("locale")
    if chosen in languages:
        return chosen
    if not has_request_context():  # the CLI and the scheduler speak English
        return "en"
    from flask_login import current_user

    if current_user and current_user.is_authenticated and current_user.language:
        return current_user.language
    return request.accept_languages.best_match(languages) or "en"


def use_language(language: str | None) -> None:
    """Make this request's pages speak `language` (when we have it)."""
    from flask_babel import refresh

    if language in current_app.config["LANGUAGES"]:
        g.locale = language
        refresh()


babel = Babel()


def init_app(app: Flask) -> None:
    """Set up Flask-Babel with our selector and translations folder."""
    from flask_babel import get_locale

    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["get_locale"] = get_locale
