"""Newsletters from MJML templates: compile once per campaign, personalise per mail.

A template is MJML written with Jinja2 (a sandboxed environment, autoescaping on).
`compile_newsletter` renders it with the campaign's content, the library's brand and
the club, turns the MJML into HTML with mjml-python, inlines the `mj-style
inline="inline"` CSS and makes the plain-text part. Per-recipient values (first
name, e-mail, unsubscribe, preferences and web-version links) are left in as unique
placeholders, so `CompiledNewsletter.personalize` only joins precomputed pieces
for each recipient: the fast path the sending engine needs.
"""

from __future__ import annotations

import html as html_lib
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import css_inline
import mjml
from babel.core import UnknownLocaleError
from babel.dates import format_date
from flask_babel import gettext as _
from jinja2 import DictLoader, StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from campaigns.messages import QpTemplate
from campaigns.render_blocks import BlockError, check_blocks, check_url, paragraphs
from campaigns.render_blocks import when_text as _when_text
from campaigns.render_text import html_to_text

KINDS = ("before_event", "after_event", "regular")
LANGUAGES = ("da", "nl", "en")
GMAIL_CLIP_WARNING_BYTES = 100 * 1024
MAX_MJML_BYTES = 2_000_000
PERSONAL_FIELDS = (
    "first_name",
    "email",
    "unsubscribe_url",
    "preferences_url",
    "web_url",
)
# Where a tracked mail's open pixel and honeypot link go (HTML part only).
TRACKING_SLOT = "tracking"
# Shown instead of an empty first name: "Dear reader," rather than "Dear ,".
FIRST_NAME_FALLBACK = {"da": "læser", "nl": "lezer", "en": "reader"}
COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}){1,2}")


@dataclass
class Brand:
    """How a library's mails look: its name, logo and colours, the footer text."""

    library_name: str
    logo_url: str | None = None
    primary_color: str = "#1f4e79"
    accent_color: str = "#c8102e"
    text_color: str = "#222222"
    background_color: str = "#f2f4f7"
    footer_text: str = ""


@dataclass
class ClubInfo:
    """The club a newsletter goes to."""

    name: str
    language: str = "en"


@dataclass
class LinkInfo:
    """A link in a newsletter; `track` says whether clicks on it may be counted."""

    label: str
    url: str
    tag: str | None = None
    track: bool = True


@dataclass
class EventInfo:
    """An event as a newsletter shows it; times are aware, shown in `timezone`."""

    title: str
    description: str
    starts_at: datetime
    ends_at: datetime | None = None
    timezone: str = "UTC"
    venue: str = ""
    image_url: str | None = None
    ticket_url: str | None = None
    materials: list[LinkInfo] = field(default_factory=list)


@dataclass
class Recipient:
    """The per-recipient values one mail is personalised with."""

    first_name: str
    email: str
    unsubscribe_url: str
    preferences_url: str
    web_url: str
    extra: dict = field(default_factory=dict)


@dataclass
class Content:
    """What the editor wrote: kind, subject, preheader, blocks and their events."""

    kind: str
    subject: str
    preheader: str
    blocks: list[dict]
    events: dict[int, EventInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltinTemplate:
    """A template shipped with Klubpost, for one kind of newsletter and language."""

    key: str
    kind: str
    language: str
    name: str
    source: str


class RenderError(Exception):
    """A newsletter can't be rendered; `message` says why, `line` where if known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.line = message, line

    def __str__(self) -> str:
        if self.line:
            return _("Line %(line)d: %(message)s", line=self.line, message=self.message)
        return self.message


# --- templates -----------------------------------------------------------------

TEMPLATE_NAMES = {
    "before_event": {
        "da": "Invitation til arrangement",
        "nl": "Uitnodiging voor activiteit",
        "en": "Event invitation",
    },
    "after_event": {
        "da": "Tak for i dag (efter arrangement)",
        "nl": "Bedankt voor je komst (na activiteit)",
        "en": "Thank you for coming (after the event)",
    },
    "regular": {
        "da": "Nyhedsbrev med kommende arrangementer",
        "nl": "Nieuwsbrief met komende activiteiten",
        "en": "Newsletter with coming events",
    },
}
PARTIALS = {
    "klubpost/layout.mjml": "_layout.mjml",
    "klubpost/blocks.mjml": "_blocks.mjml",
}


def _template_file(name: str) -> str:
    return resources.files("campaigns").joinpath("templates", name).read_text("utf-8")


def builtin_templates() -> list[BuiltinTemplate]:
    """The shipped templates: each kind of newsletter in Danish, Dutch and English."""
    return list(_builtin_templates())


@lru_cache(maxsize=1)
def _builtin_templates() -> tuple[BuiltinTemplate, ...]:
    templates = []
    for kind in KINDS:
        layout = _template_file(f"{kind}.mjml")
        for language in LANGUAGES:
            templates.append(
                BuiltinTemplate(
                    key=f"{kind}-{language}",
                    kind=kind,
                    language=language,
                    name=TEMPLATE_NAMES[kind][language],
                    source=f'{{% set lang = "{language}" %}}\n{layout}',
                )
            )
    return tuple(templates)


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, also refusing huge string repetitions and powers."""

    intercepted_binops = frozenset({"*", "**"})
    LIMIT = 100_000

    def call_binop(self, context, operator, left, right):
        """Do `left operator right` unless the result would be unreasonably big."""
        if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
            raise SecurityError(_("The number is too big."))
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > self.LIMIT
                ):
                    raise SecurityError(_("The text is too long."))
        return super().call_binop(context, operator, left, right)


def _format_date(moment: datetime, pattern: str, lang: str) -> str:
    return format_date(moment, pattern, locale=lang)


def _when(event: dict, lang: str) -> str:
    return _when_text(event["starts"], event["ends"], lang)


def _small_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > 1000:
        raise SecurityError(_("The loop is too long."))
    return numbers


@lru_cache(maxsize=1)
def _environment() -> _Sandbox:
    partials = {name: _template_file(file) for name, file in PARTIALS.items()}
    env = _Sandbox(
        loader=DictLoader(partials),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Loops in editors' templates stay small (Jinja's sandbox allows 100,000).
    env.globals["range"] = _small_range
    env.filters["when"] = _when
    env.filters["format_date"] = _format_date
    return env


# --- per-recipient placeholders ---------------------------------------------------


class _Placeholders:
    """Unique markers standing for per-recipient values until `personalize`."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(5)
        self.pattern = re.compile(f"kp{self.nonce}-([A-Za-z0-9_]+)-")
        self.leftover = re.compile(f"kp{self.nonce}", re.I)

    def token(self, key: str) -> str:
        """The marker for `key`."""
        return f"kp{self.nonce}-{key}-"


class _ExtraFields(dict):
    """`recipient.extra.NAME` in a template: a marker for that extra value."""

    NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,40}")

    def __init__(self, placeholders: _Placeholders) -> None:
        super().__init__()
        self._placeholders = placeholders

    def __missing__(self, name: Any) -> str:
        if not isinstance(name, str) or not self.NAME.fullmatch(name):
            raise SecurityError(_("“%(name)s” is not a field name.", name=str(name)))
        return self._placeholders.token(f"x_{name}")


class _RecipientFields:
    """What a template sees as `recipient`: markers instead of values."""

    def __init__(self, placeholders: _Placeholders) -> None:
        for name in PERSONAL_FIELDS:
            setattr(self, name, placeholders.token(name))
        self.extra = _ExtraFields(placeholders)


class _Pieces:
    """A text split at its markers, to be joined again with each recipient's values."""

    def __init__(self, text: str, placeholders: _Placeholders) -> None:
        self.parts = placeholders.pattern.split(text)
        self.slots = [(i, self.parts[i]) for i in range(1, len(self.parts), 2)]
        self.keys = {key for _i, key in self.slots}

    def fill(self, values: dict[str, str]) -> str:
        """The text with each marker replaced by its value."""
        parts = self.parts.copy()
        for index, key in self.slots:
            parts[index] = values[key]
        return "".join(parts)


@dataclass
class CompiledNewsletter:
    """A newsletter rendered once, ready to be personalised for each recipient."""

    html_size: int
    warnings: list[str]
    links: list[LinkInfo]
    language: str
    _html: _Pieces
    _text: _Pieces
    _qp: tuple[QpTemplate, QpTemplate] | None = None

    def __post_init__(self) -> None:
        self._link_keys = [f"link{i}" for i in range(len(self.links))]
        self._link_text = {f"link{i}": link.url for i, link in enumerate(self.links)}
        self._link_html = {
            key: html_lib.escape(url) for key, url in self._link_text.items()
        }
        used = self._html.keys | self._text.keys
        self._extra_keys = sorted(key for key in used if key.startswith("x_"))

    def personalize(
        self,
        recipient: Recipient,
        link_urls: dict[int, str] | None = None,
        tracking_html: str = "",
    ) -> tuple[str, str]:
        """The (HTML, plain text) of the mail for `recipient`.

        `link_urls` may replace the blocks' links (by their index in `links`),
        e.g. with this recipient's tracked redirects; others keep their URL.
        `tracking_html` (the open pixel, the honeypot link) goes in as it is at
        the end of the HTML body; the text part has no place for it."""
        escaped, values = self._values(recipient, link_urls, tracking_html)
        return self._html.fill(escaped), self._text.fill(values)

    def encoded(
        self,
        recipient: Recipient,
        link_urls: dict[int, str] | None = None,
        tracking_html: str = "",
    ) -> tuple[bytes, bytes]:
        """`personalize`, as quoted-printable mail bodies (HTML, text).

        The fixed pieces were encoded once (`QpTemplate`); only this
        recipient's values are encoded here, which is what makes sending fast.
        """
        if self._qp is None:
            self._qp = (
                QpTemplate(self._html.parts[0::2], self._html.parts[1::2]),
                QpTemplate(self._text.parts[0::2], self._text.parts[1::2]),
            )
        escaped, values = self._values(recipient, link_urls, tracking_html)
        # Most values (the links) are the same in both parts: encoded once.
        encoded: dict[str, bytes] = {}
        return self._qp[0].render(escaped, encoded), self._qp[1].render(values, encoded)

    def _values(
        self, recipient: Recipient, link_urls: dict[int, str] | None, tracking_html: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        """This recipient's values for the HTML (escaped) and for the text."""
        values = {
            "first_name": (recipient.first_name or "").strip()
            or FIRST_NAME_FALLBACK[self.language],
            "email": recipient.email or "",
            "unsubscribe_url": recipient.unsubscribe_url,
            "preferences_url": recipient.preferences_url or "",
            "web_url": recipient.web_url or "",
        }
        extra = recipient.extra or {}
        for key in self._extra_keys:
            value = extra.get(key[2:])
            values[key] = "" if value is None else str(value)
        escaped = {key: _escape(value) for key, value in values.items()}
        values.update(self._link_text)
        escaped.update(self._link_html)
        if link_urls:
            keys = self._link_keys
            for index, url in link_urls.items():
                if 0 <= index < len(keys):
                    key = keys[index]
                    values[key], escaped[key] = url, _escape(url)
        escaped[TRACKING_SLOT] = tracking_html
        return escaped, values


_HTML_SPECIAL = re.compile(r"[&<>\"']")


def _escape(value: str) -> str:
    """`html.escape`, skipped for the many values (tokens, plain URLs, names)
    that have nothing to escape."""
    return html_lib.escape(value) if _HTML_SPECIAL.search(value) else value


def sample_recipient(language: str) -> Recipient:
    """A made-up recipient for previews: a sample name, links that go nowhere."""
    names = {"da": "Mette", "nl": "Sanne", "en": "Alex"}
    name = names.get(language, names["en"])
    return Recipient(
        first_name=name,
        email=f"{name.lower()}@example.org",
        unsubscribe_url="#",
        preferences_url="#",
        web_url="#",
    )


# --- compiling --------------------------------------------------------------------


def compile_newsletter(
    source: str, content: Content, brand: Brand, club: ClubInfo
) -> CompiledNewsletter:
    """Render `source` (MJML + Jinja) with the content once; raises RenderError."""
    if club.language not in LANGUAGES:
        raise RenderError(_("Unknown language “%(lang)s”.", lang=club.language))
    if content.kind not in KINDS:
        raise RenderError(
            _("Unknown kind of newsletter “%(kind)s”.", kind=content.kind)
        )
    try:
        blocks = check_blocks(content.blocks, content.events or {})
    except BlockError as exc:
        raise RenderError(str(exc)) from exc
    placeholders = _Placeholders()
    links = _link_slots(blocks, placeholders)
    context = _context(content, blocks, brand, club, placeholders)
    mjml_source = _render_template(source, context)
    html = _mjml_to_html(mjml_source, source)
    html, links = _slot_template_links(html, links, placeholders)
    html_pieces = _Pieces(_with_tracking_slot(html, placeholders), placeholders)
    _check_personal_fields(html, html_pieces, placeholders)
    text_pieces = _Pieces(html_to_text(html), placeholders)
    size = len(html.encode("utf-8"))
    return CompiledNewsletter(
        html_size=size,
        warnings=_warnings(size, html_pieces) + _block_warnings(content.kind, blocks),
        links=links,
        language=club.language,
        _html=html_pieces,
        _text=text_pieces,
    )


BODY_END = re.compile(r"</body\s*>", re.I)
ANCHOR = re.compile(r"<a\b([^>]*)>(.*?)</a\s*>", re.I | re.S)
HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.I)
DATA_ATTRIBUTE = re.compile(
    r"""\bdata-(notrack|tag)(?:\s*=\s*(["'])([^"']*)\2)?""", re.I
)
TAG_NAME = re.compile(r"[a-z0-9_-]{1,40}")
INNER_TAGS = re.compile(r"<[^>]+>")
ALT = re.compile(r"""\balt\s*=\s*(["'])([^"']*)\1""", re.I)


def _slot_template_links(
    html: str, links: list[LinkInfo], placeholders: _Placeholders
) -> tuple[str, list[LinkInfo]]:
    """Give the template's own links (a logo, a button, a link in a text) markers
    like the blocks' links, and number all links in the order they appear.

    An `<a>` with `data-notrack` is never tracked; `data-tag="book"` tags it.
    """
    links = list(links)

    def slot(match: re.Match) -> str:
        attributes, inner = match.group(1), match.group(2)
        href = HREF.search(attributes)
        if href is None:
            return match.group(0)
        flags = {
            m.group(1).lower(): m.group(3) for m in DATA_ATTRIBUTE.finditer(attributes)
        }
        tag = (flags.get("tag") or "").strip().lower()
        text = " ".join(html_lib.unescape(INNER_TAGS.sub(" ", inner)).split())
        if not text and (alt := ALT.search(inner)):
            text = html_lib.unescape(alt.group(2)).strip()
        url = html_lib.unescape(href.group(3))
        if placeholders.leftover.search(url):
            return match.group(0)  # personal (e.g. ?email=…): never tracked
        links.append(
            LinkInfo(
                text[:300] or url,
                url,
                tag if TAG_NAME.fullmatch(tag) else None,
                "notrack" not in flags,
            )
        )
        marker = placeholders.token(f"link{len(links) - 1}")
        quote = href.group(2)
        attributes = (
            attributes[: href.start()]
            + f"{href.group(1)}{quote}{marker}{quote}"
            + attributes[href.end() :]
        )
        return f"<a{attributes}>{inner}</a>"

    html = ANCHOR.sub(slot, html)
    return _in_document_order(html, links, placeholders)


def _in_document_order(
    html: str, links: list[LinkInfo], placeholders: _Placeholders
) -> tuple[str, list[LinkInfo]]:
    """Renumber the link markers so that link 0 is the first one in the mail."""
    link_marker = re.compile(f"kp{placeholders.nonce}-link([0-9]+)-")
    order: list[int] = []
    for match in link_marker.finditer(html):
        index = int(match.group(1))
        if index not in order:
            order.append(index)
    order += [index for index in range(len(links)) if index not in order]
    new_index = {old: new for new, old in enumerate(order)}
    html = link_marker.sub(
        lambda m: placeholders.token(f"link{new_index[int(m.group(1))]}"), html
    )
    return html, [links[old] for old in order]


def _with_tracking_slot(html: str, placeholders: _Placeholders) -> str:
    """The HTML with a marker at the end of its body, where a tracked mail's
    pixel and honeypot link go (nothing for other mails)."""
    marker = placeholders.token(TRACKING_SLOT)
    ends = list(BODY_END.finditer(html))
    if not ends:
        return html + marker
    at = ends[-1].start()
    return html[:at] + marker + html[at:]


def _brand_view(brand: Brand) -> dict:
    for label, color in (
        ("primary_color", brand.primary_color),
        ("accent_color", brand.accent_color),
        ("text_color", brand.text_color),
        ("background_color", brand.background_color),
    ):
        if not isinstance(color, str) or not COLOR.fullmatch(color):
            raise RenderError(
                _(
                    "The library's colour %(name)s is “%(value)s”, not a colour "
                    "such as #1f4e79.",
                    name=label,
                    value=str(color)[:20],
                )
            )
    problem = check_url(brand.logo_url, allow_empty=True)
    if problem:
        raise RenderError(_("The library's logo: %(problem)s", problem=problem))
    return {
        "library_name": brand.library_name,
        "logo_url": brand.logo_url or None,
        "primary_color": brand.primary_color,
        "accent_color": brand.accent_color,
        "text_color": brand.text_color,
        "background_color": brand.background_color,
        "footer_paragraphs": paragraphs(brand.footer_text or ""),
    }


def _context(content, blocks, brand, club, placeholders) -> dict:
    recipient = _RecipientFields(placeholders)
    context = {name: getattr(recipient, name) for name in PERSONAL_FIELDS}
    context.update(
        content={
            "kind": content.kind,
            "subject": content.subject or "",
            "preheader": content.preheader or "",
            "blocks": blocks,
        },
        brand=_brand_view(brand),
        club={"name": club.name, "language": club.language},
        lang=club.language,
        recipient=recipient,
    )
    return context


def _template_line(exc: BaseException) -> int | None:
    """The line of the editor's source where a render error happened, if known."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@lru_cache(maxsize=64)
def _compiled_template(source: str):
    """Jinja's compiled template for `source` (compiling is most of its cost)."""
    return _environment().from_string(source)


def _render_template(source: str, context: dict) -> str:
    try:
        template = _compiled_template(source)
    except TemplateSyntaxError as exc:
        line = exc.lineno if exc.name is None else None
        raise RenderError(_("Template error: %(e)s", e=exc.message), line) from exc
    try:
        result = template.render(context)
    except SecurityError as exc:
        raise RenderError(
            _("The template uses something it may not: %(e)s", e=str(exc)),
            _template_line(exc),
        ) from exc
    except (TemplateError, UnknownLocaleError) as exc:
        raise RenderError(
            _("Template error: %(e)s", e=str(exc)), _template_line(exc)
        ) from exc
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise RenderError(
            _("Template error: %(e)s", e=str(exc)), _template_line(exc)
        ) from exc
    if len(result.encode("utf-8")) > MAX_MJML_BYTES:
        raise RenderError(_("The newsletter is far too long."))
    return result


# --- MJML -------------------------------------------------------------------------

MJML_ELEMENTS = frozenset(
    [
        "mjml",
        "mj-head",
        "mj-body",
        "mj-attributes",
        "mj-all",
        "mj-class",
        "mj-breakpoint",
        "mj-font",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-accordion",
        "mj-accordion-element",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-button",
        "mj-carousel",
        "mj-carousel-image",
        "mj-column",
        "mj-divider",
        "mj-group",
        "mj-hero",
        "mj-image",
        "mj-navbar",
        "mj-navbar-link",
        "mj-raw",
        "mj-section",
        "mj-social",
        "mj-social-element",
        "mj-spacer",
        "mj-table",
        "mj-text",
        "mj-wrapper",
    ]
)
MJML_TAG = re.compile(r"<\s*(mj(?:ml|-[a-z0-9-]*))\b", re.I)
INLINE_STYLE = re.compile(
    r"<mj-style\b[^>]*\binline\s*=\s*[\"']inline[\"'][^>]*>(.*?)</mj-style\s*>",
    re.I | re.S,
)
MJML_POSITION = re.compile(r"at position (\d+):(\d+)")


def _line_in_source(snippet: str, source: str) -> int | None:
    index = source.find(snippet) if snippet else -1
    return source.count("\n", 0, index) + 1 if index >= 0 else None


def _check_elements(mjml_source: str, source: str) -> None:
    for match in MJML_TAG.finditer(mjml_source):
        name = match.group(1).lower()
        if name == "mj-include":
            raise RenderError(
                _("<mj-include> is not allowed: put the content in the template."),
                _line_in_source(match.group(0), source),
            )
        if name not in MJML_ELEMENTS:
            raise RenderError(
                _("Unknown MJML element <%(name)s>.", name=name),
                _line_in_source(match.group(0), source),
            )


def _refuse_include(path: str) -> str:
    # mj-include is refused before rendering; this loader makes sure it never
    # reaches the file system or the network even so.
    raise ValueError("mj-include is not allowed")


def _mjml_error(exc: ValueError, mjml_source: str, source: str) -> RenderError:
    detail = str(exc)
    position = MJML_POSITION.search(detail)
    snippet = ""
    if position:
        raw = mjml_source.encode("utf-8")
        start, end = int(position.group(1)), int(position.group(2))
        snippet = raw[start:end].decode("utf-8", "replace").strip()
    if detail.startswith("unable to find mjml element"):
        message = _("The template must be MJML, starting with <mjml>.")
    elif detail.startswith("unexpected end of stream"):
        message = _("The MJML ends too early: an element is not closed.")
    elif detail.startswith("unexpected element"):
        message = _("Element not allowed here: “%(snippet)s”.", snippet=snippet)
    elif detail.startswith("unexpected token"):
        message = _("Unexpected text in the MJML: “%(snippet)s”.", snippet=snippet)
    elif detail.startswith("unable to parse"):
        message = _("The MJML has a malformed tag or attribute.")
    else:
        message = _("The MJML can't be rendered: %(detail)s", detail=detail)
    return RenderError(message, _line_in_source(snippet, source))


def _inline_css(mjml_source: str) -> tuple[str, str]:
    """The MJML without its inline="inline" styles, and their CSS to inline."""
    css = []

    def blank(match: re.Match) -> str:
        css.append(match.group(1))
        # Same length, same lines: positions in mjml errors stay right.
        return re.sub(r"[^\n]", " ", match.group(0))

    return INLINE_STYLE.sub(blank, mjml_source), "\n".join(css)


MJML_HEAD = re.compile(r"<mj-head\b.*?</mj-head\s*>", re.I | re.S)
HEAD_GAP = re.compile(r">([ \t\r\n]+)<")


def _tidy_head(mjml_source: str) -> str:
    """mjml-python 1.4.2 refuses whitespace between head elements unless it starts
    with a line break ("<mj-title>..</mj-title> <mj-preview>"): start each gap with
    one, keeping the length so error positions stay right."""

    def tidy(head: re.Match) -> str:
        return HEAD_GAP.sub(lambda gap: ">\n" + gap.group(1)[1:] + "<", head.group(0))

    return MJML_HEAD.sub(tidy, mjml_source, count=1)


MJML_START = re.compile(r"\s*(?:<!--.*?-->\s*)*<mjml[\s>]", re.S | re.I)


def _mjml_to_html(mjml_source: str, source: str) -> str:
    if not MJML_START.match(mjml_source):
        raise RenderError(_("The template must be MJML, starting with <mjml>."))
    _check_elements(mjml_source, source)
    stripped, css = _inline_css(mjml_source)
    stripped = _tidy_head(stripped)
    try:
        html = mjml.mjml2html(stripped, include_loader=_refuse_include)
    except ValueError as exc:
        raise _mjml_error(exc, stripped, source) from exc
    if css.strip():
        inliner = css_inline.CSSInliner(
            inline_style_tags=False,
            keep_style_tags=True,
            load_remote_stylesheets=False,
            extra_css=css,
        )
        try:
            html = inliner.inline(html)
        except (css_inline.InlineError, ValueError) as exc:
            raise RenderError(_("The inline CSS is invalid: %(e)s", e=exc)) from exc
    return html


# --- checks -------------------------------------------------------------------------


def _check_personal_fields(
    html: str, pieces: _Pieces, placeholders: _Placeholders
) -> None:
    if any(placeholders.leftover.search(part) for part in pieces.parts[::2]):
        raise RenderError(
            _(
                "A personal value (such as the first name or a link) was changed "
                "by a filter: insert it as it is, e.g. {{ first_name }}."
            )
        )
    token = re.escape(placeholders.token("unsubscribe_url"))
    if not re.search(rf"href=\"\s*{token}", html):
        raise RenderError(
            _(
                "Every newsletter needs a visible unsubscribe link: add "
                '<a href="{{ unsubscribe_url }}">…</a>.'
            )
        )


def _warnings(size: int, pieces: _Pieces) -> list[str]:
    warnings = []
    if size > GMAIL_CLIP_WARNING_BYTES:
        warnings.append(
            _(
                "The newsletter is %(kb)d KB of HTML: Gmail cuts off mails over "
                "about 100 KB, hiding the end and the unsubscribe link. Use fewer "
                "or shorter blocks.",
                kb=size // 1024,
            )
        )
    if "preferences_url" not in pieces.keys:
        warnings.append(_("The newsletter has no link to the preferences page."))
    if "web_url" not in pieces.keys:
        warnings.append(_("The newsletter has no “view in browser” link."))
    return warnings


def _block_warnings(kind: str, blocks: list[dict]) -> list[str]:
    """What an editor may want to fix: images without a text, past events."""
    warnings = []
    now = datetime.now(UTC)
    for block in blocks:
        if block["type"] == "image" and not block["alt"]:
            warnings.append(
                _(
                    "Block %(number)d (image) has no text for readers who don't "
                    "see images.",
                    number=block["number"],
                )
            )
        elif (
            block["type"] == "event"
            and kind == "before_event"
            and (block["ends"] or block["starts"]) < now
        ):
            warnings.append(
                _(
                    "Block %(number)d (event): “%(title)s” has already taken place.",
                    number=block["number"],
                    title=block["title"],
                )
            )
    return warnings


def _link_slots(blocks: list[dict], placeholders: _Placeholders) -> list[LinkInfo]:
    """The blocks' links, in order; each URL in `blocks` becomes a marker
    ("link" + its index) so that `personalize` can put in a tracked URL."""
    links: list[LinkInfo] = []

    def slot(view: dict, key: str, label: str, tag=None, track=True) -> None:
        links.append(LinkInfo(label, view[key], tag, track))
        view[key] = placeholders.token(f"link{len(links) - 1}")

    for block in blocks:
        kind = block["type"]
        if kind == "image" and block["link"]:
            slot(block, "link", block["alt"] or block["url"])
        elif kind == "button":
            slot(block, "url", block["label"])
        elif kind == "event":
            if block["ticket_url"]:
                slot(block, "ticket_url", block["title"])
            for link in block["materials"]:
                slot(link, "url", link["label"], link["tag"], link["track"])
        elif kind == "links":
            for link in block["links"]:
                slot(link, "url", link["label"], link["tag"], link["track"])
    return links
