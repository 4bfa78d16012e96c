"""Web forms for clubs and subscribers."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

LANGUAGE_CHOICES = [
    SelectChoice("da", "Dansk"),
    SelectChoice("nl", "Nederlands"),
    SelectChoice("en", "English"),
]


class ClubForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    slug = StringField(
        _l("Short name in links"), validators=[DataRequired(), Length(max=64)]
    )
    description = TextAreaField(_l("Description"), validators=[Length(max=5000)])
    language = SelectField(_l("Language"), choices=LANGUAGE_CHOICES)
    from_name = StringField(
        _l("Sender name"), validators=[DataRequired(), Length(max=200)]
    )
    from_email = EmailField(
        _l("Sender address"), validators=[DataRequired(), Length(max=320)]
    )
    reply_to = EmailField(
        _l("Reply-to address"), validators=[Optional(), Length(max=320)]
    )
    double_opt_in = BooleanField(_l("New members confirm by e-mail (double opt-in)"))
    tracking_consent_required = BooleanField(
        _l("Track opens and clicks only for members who consent to it")
    )
    tracking_mode = SelectField(
        _l("Opens and clicks"),
        choices=[
            SelectChoice("individual", _l("Counted per member (who consented)")),
            SelectChoice("anonymous", _l("Counted per link only, naming nobody")),
            SelectChoice("off", _l("Not tracked: plain links, no pixel")),
        ],
        default="individual",
    )
    public_archive = BooleanField(_l("Show sent newsletters in a public archive"))
    consent_text = TextAreaField(
        _l("Consent text on the sign-up form"),
        validators=[DataRequired(), Length(max=2000)],
    )
    tracking_text = TextAreaField(
        _l("Tracking consent text"), validators=[DataRequired(), Length(max=2000)]
    )


class SubscriberForm(FlaskForm):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=320)])
    first_name = StringField(_l("First name"), validators=[Length(max=200)])
    last_name = StringField(_l("Last name"), validators=[Length(max=200)])
    language = SelectField(_l("Language"), choices=LANGUAGE_CHOICES)
    attributes = TextAreaField(
        _l("Attributes (one per line: name = value)"), validators=[Length(max=20000)]
    )


class NewMemberForm(SubscriberForm):
    consent_given = BooleanField(
        _l("This person has already given consent (e.g. on a paper form)")
    )
    tracking_consent = BooleanField(_l("Consents to tracking of opens and clicks"))


class MembershipForm(FlaskForm):
    status = SelectField(_l("Status"))
    tracking_consent = BooleanField(_l("Consents to tracking of opens and clicks"))


class SubscribeForm(FlaskForm):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=320)])
    first_name = StringField(_l("First name"), validators=[Length(max=200)])
    consent = BooleanField(
        validators=[DataRequired(_l("Please tick the box to subscribe."))]
    )
    tracking_consent = BooleanField()
    # Hidden from people; bots that fill in every field reveal themselves.
    website = StringField(validators=[Length(max=200)])


class PreferencesForm(FlaskForm):
    first_name = StringField(_l("First name"), validators=[Length(max=200)])
    last_name = StringField(_l("Last name"), validators=[Length(max=200)])
    language = SelectField(_l("Language"), choices=LANGUAGE_CHOICES)
