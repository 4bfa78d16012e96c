"""Web forms for logging in and managing staff users and tokens."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, Optional

from accounts.models import Role

ROLE_CHOICES = [
    SelectChoice(Role.STAFF.value, _l("Staff (read only)")),
    SelectChoice(Role.EDITOR.value, _l("Editor")),
    SelectChoice(Role.ADMIN.value, _l("Administrator")),
]
LANGUAGE_CHOICES = [
    SelectChoice("", _l("Browser's language")),
    SelectChoice("da", "Dansk"),
    SelectChoice("nl", "Nederlands"),
    SelectChoice("en", "English"),
]


class LoginForm(FlaskForm):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=320)])
    password = PasswordField(
        _l("Password"), validators=[DataRequired(), Length(max=200)]
    )


class UserForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    email = EmailField(
        _l("E-mail"), validators=[DataRequired(), Email(), Length(max=320)]
    )
    role = SelectField(_l("Role"), choices=ROLE_CHOICES)
    language = SelectField(_l("Language"), choices=LANGUAGE_CHOICES)
    password = PasswordField(
        _l("Password"), validators=[Optional(), Length(min=10, max=200)]
    )
    active = BooleanField(_l("Active"), default=True)


class TokenForm(FlaskForm):
    name = StringField(_l("Token name"), validators=[DataRequired(), Length(max=100)])


TIMEZONE_CHOICES = [
    SelectChoice(zone, zone)
    for zone in (
        "Europe/Copenhagen",
        "Europe/Amsterdam",
        "Europe/Brussels",
        "Europe/Berlin",
        "Europe/London",
        "UTC",
    )
]


class LibraryForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    domain = StringField(
        _l("Mail domain"), validators=[DataRequired(), Length(max=253)]
    )
    timezone = SelectField(_l("Time zone"), choices=TIMEZONE_CHOICES)
    language = SelectField(
        _l("Language"), choices=[c for c in LANGUAGE_CHOICES if c.value]
    )
    record_ip = BooleanField(_l("Keep the (truncated) IP address in consent records"))
    logo_url = StringField(_l("Logo (link to an image)"), validators=[Length(max=2000)])
    primary_color = StringField(_l("Main colour"), validators=[Length(max=7)])
    accent_color = StringField(_l("Accent colour"), validators=[Length(max=7)])


class DkimForm(FlaskForm):
    domain = StringField(
        _l("Signing domain (d=)"), validators=[DataRequired(), Length(max=253)]
    )
    selector = StringField(
        _l("Selector (s=)"), validators=[DataRequired(), Length(max=63)]
    )
    private_key = TextAreaField(
        _l("Private key (PEM): paste one, or leave empty"),
        validators=[Optional(), Length(max=20_000)],
    )
