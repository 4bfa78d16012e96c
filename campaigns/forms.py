"""Web forms for events, templates, new campaigns and test sends."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DecimalField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, ListWidget

KIND_CHOICES = [
    SelectChoice("before_event", _l("Before an event (invitation)")),
    SelectChoice("after_event", _l("After an event (follow-up)")),
    SelectChoice("regular", _l("Regular issue")),
]
LANGUAGE_CHOICES = [
    SelectChoice("da", "Dansk"),
    SelectChoice("nl", "Nederlands"),
    SelectChoice("en", "English"),
]


class CheckboxList(SelectMultipleField):
    """Several choices as checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class EventForm(FlaskForm):
    title = StringField(_l("Title"), validators=[DataRequired(), Length(max=200)])
    description = TextAreaField(_l("Description"), validators=[Length(max=20000)])
    starts_at = StringField(
        _l("Starts"),
        validators=[DataRequired()],
        render_kw={"type": "datetime-local"},
    )
    ends_at = StringField(_l("Ends"), render_kw={"type": "datetime-local"})
    venue = StringField(_l("Venue"), validators=[Length(max=300)])
    image_url = StringField(_l("Image (link)"), validators=[Length(max=2000)])
    ticket_url = StringField(
        _l("Tickets or registration (link)"), validators=[Length(max=2000)]
    )
    club_ids = CheckboxList(_l("Clubs it concerns"), coerce=int, choices=[])
    materials = TextAreaField(
        _l("Materials after the event (one per line: label | link | tag)"),
        validators=[Length(max=50000)],
    )


class TemplateForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(), Length(max=200)])
    kind = SelectField(_l("Kind"), choices=KIND_CHOICES)
    language = SelectField(_l("Language"), choices=LANGUAGE_CHOICES)
    source = TextAreaField(_l("MJML source"), validators=[DataRequired()])
    shared = BooleanField(_l("Share with every library of the consortium"))


class NewCampaignForm(FlaskForm):
    kind = SelectField(_l("Kind"), choices=KIND_CHOICES)
    event_id = SelectField(_l("Event"), choices=[])
    template = SelectField(_l("Template"), choices=[])
    subject = StringField(_l("Subject"), validators=[DataRequired(), Length(max=300)])


class TestSendForm(FlaskForm):
    addresses = StringField(
        _l("Send a test to (up to 5 addresses, separated by commas)"),
        validators=[DataRequired(), Length(max=2000)],
    )
    subscriber_id = SelectField(_l("Personalise as"), choices=[])


REPEAT_CHOICES = [
    SelectChoice("", _l("Does not repeat")),
    SelectChoice("weekly", _l("Every week")),
    SelectChoice("fortnightly", _l("Every other week")),
    SelectChoice(
        "monthly_weekday",
        _l("Every month on the same weekday (e.g. the first Tuesday)"),
    ),
    SelectChoice(
        "monthly_last_weekday",
        _l("Every month on the last such weekday (e.g. the last Friday)"),
    ),
    SelectChoice("monthly_day", _l("Every month on the same day")),
]


class ScheduleForm(FlaskForm):
    mode = RadioField(
        _l("When"),
        choices=[
            SelectChoice("now", _l("Now")),
            SelectChoice("fixed", _l("At a date and time")),
            SelectChoice("before_event", _l("Before the event starts")),
            SelectChoice("after_event", _l("After the event ends")),
        ],
        default="now",
        validators=[DataRequired()],
    )
    send_at = StringField(_l("Date and time"), validators=[Optional(), Length(max=40)])
    offset_hours = DecimalField(
        _l("Hours before or after the event"),
        places=None,
        validators=[Optional(), NumberRange(min=0, max=24 * 90)],
    )
    repeat = SelectField(_l("Repeat"), choices=REPEAT_CHOICES, default="")
