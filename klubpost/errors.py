"""Turn every error into a clear page, or a JSON error under /api/."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError


class ApiError(Exception):
    """An error to report to an API client as `{"error": {code, message, field}}`."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def wants_json() -> bool:
    """Whether this request is an API request (answered in JSON)."""
    return request.path.startswith("/api/")


def json_error(status: int, code: str, message: str, field: str | None = None):
    """The API's one error shape."""
    body = {"error": {"code": code, "message": message, "field": field}}
    return jsonify(body), status


def init_app(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        return json_error(exc.status, exc.code, exc.message, exc.field)

    @app.errorhandler(CSRFError)
    def handle_csrf(exc: CSRFError):
        message = _(
            "This form has expired or did not come from this site. "
            "Go back, reload the page and try again."
        )
        return render_template("errors/error.html", code=400, message=message), 400

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException):
        code = exc.code or 500
        if wants_json():
            slug = (exc.name or "error").lower().replace(" ", "_")
            return json_error(code, slug, exc.description or exc.name)
        return render_template(
            "errors/error.html", code=code, message=exc.description
        ), code

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        if app.testing:
            raise exc  # tests must see the bug, not a polite page
        app.logger.exception("unhandled error")
        if wants_json():
            return json_error(
                500, "internal_error", "Something went wrong on our side."
            )
        error = InternalServerError()
        return render_template(
            "errors/error.html", code=500, message=error.description
        ), 500
