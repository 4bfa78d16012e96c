"""Reading members' CSV files (encoding, delimiter, structure) and writing safe CSV.

Everything that can be wrong with an uploaded file is found here, before a job is
queued, and reported as a `CsvProblem` whose message names the problem.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Response, stream_with_context
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from subscribers.services import MAX_ATTRIBUTES

# The encodings a user may choose; "auto" tries UTF-8, then Windows-1252.
ENCODINGS = {
    "utf-8": _l("UTF-8 (with or without BOM)"),
    "cp1252": _l("Windows-1252 (older Excel on Windows)"),
    "latin-1": _l("ISO-8859-1 (Latin-1)"),
}
DELIMITERS = {",": _l("comma"), ";": _l("semicolon"), "\t": _l("tab")}
MAX_COLUMNS = 100
SNIFF_LINES = 50

# What a column can be used for, besides a free attribute or nothing.
ROLES = ("email", "first_name", "last_name", "language", "attribute", "ignore")
SINGLE_ROLES = ("email", "first_name", "last_name", "language")
ROLE_GUESSES = {
    "email": {
        "email",
        "e-mail",
        "mail",
        "emailaddress",
        "email address",
        "e-mail address",
        "e-mailadresse",
        "e-mailadres",
        "emailadres",
        "mailadresse",
        "adresse",
    },
    "first_name": {"first name", "first_name", "firstname", "fornavn", "voornaam"},
    "last_name": {
        "last name",
        "last_name",
        "lastname",
        "surname",
        "efternavn",
        "achternaam",
    },
    "language": {"language", "lang", "sprog", "taal"},
}
LOOKS_LIKE_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class CsvProblem(Exception):
    """An uploaded file that cannot be imported; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class CsvFile:
    """A decoded, checked CSV file: how to read it and what it holds."""

    text: str
    encoding: str
    delimiter: str
    columns: list[str]
    total_rows: int


def read_upload(
    content: bytes, encoding: str = "auto", delimiter: str = "auto", max_rows: int = 0
) -> CsvFile:
    """Decode and check an uploaded file; raise CsvProblem naming what is wrong."""
    text, encoding = decode(content, encoding)
    if not text.strip():
        raise CsvProblem(_("The file is empty."))
    if delimiter == "auto":
        delimiter = sniff_delimiter(text)
    elif delimiter not in DELIMITERS:
        raise CsvProblem(_("Choose comma, semicolon or tab as the separator."))
    columns, total = check_structure(text, delimiter, max_rows)
    return CsvFile(text, encoding, delimiter, columns, total)


def decode(content: bytes, encoding: str = "auto") -> tuple[str, str]:
    """The file's text and the encoding it was read with."""
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CsvProblem(
            _(
                'This file is saved as UTF-16 ("Unicode text"). Save it as '
                '"CSV UTF-8" and upload it again.'
            )
        )
    if b"\x00" in content:
        raise CsvProblem(
            _(
                "This is not a text file: it contains binary data. If it is a "
                'spreadsheet, save it as "CSV UTF-8" first.'
            )
        )
    if encoding == "auto":
        try:
            return content.decode("utf-8-sig"), "utf-8"
        except UnicodeDecodeError:
            pass
        try:
            return content.decode("cp1252"), "cp1252"
        except UnicodeDecodeError as exc:
            raise CsvProblem(
                _(
                    "The file is neither UTF-8 nor Windows-1252 text (byte "
                    '0x%(byte)02x at position %(position)d). Save it as "CSV '
                    'UTF-8", or choose ISO-8859-1 as the encoding.',
                    byte=exc.object[exc.start],
                    position=exc.start,
                )
            ) from exc
    if encoding not in ENCODINGS:
        raise CsvProblem(_("Unknown encoding %(name)s.", name=encoding[:40]))
    try:
        return decode_as(content, encoding), encoding
    except UnicodeDecodeError as exc:
        raise CsvProblem(
            _(
                "The file is not valid %(encoding)s text: byte 0x%(byte)02x at "
                "position %(position)d cannot be read. Choose another encoding, or "
                'save the file as "CSV UTF-8".',
                encoding=str(ENCODINGS[encoding]),
                byte=exc.object[exc.start],
                position=exc.start,
            )
        ) from exc


def decode_as(content: bytes, encoding: str) -> str:
    """Decode with a known encoding (a UTF-8 byte order mark is dropped)."""
    return content.decode("utf-8-sig" if encoding == "utf-8" else encoding)


def sniff_delimiter(text: str) -> str:
    """Comma, semicolon or tab: the one that splits the first lines most evenly."""
    sample = "\n".join(text.splitlines()[:SNIFF_LINES])
    best, best_score = ",", (-1, -1)
    for delimiter in DELIMITERS:
        try:
            parsed = csv.reader(io.StringIO(sample), delimiter=delimiter)
            rows = [r for r in parsed if r]
        except csv.Error:
            continue
        if not rows:
            continue
        width = len(rows[0])
        consistent = sum(1 for r in rows if len(r) == width)
        score = (consistent if width > 1 else 0, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def reader(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, fields) of every non-blank row; the header is row 1."""
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    for number, fields in enumerate(rows, start=1):
        if fields and any(fields):
            yield number, fields


def check_structure(text: str, delimiter: str, max_rows: int = 0) -> tuple[list, int]:
    """The header's column names and the number of data rows, or CsvProblem."""
    rows = reader(text, delimiter)
    try:
        first = next(rows, None)
        if first is None:
            raise CsvProblem(_("The file is empty."))
        header = _header(first[1])
        ragged: list[str] = []
        total = 0
        for number, fields in rows:
            total += 1
            if len(fields) != len(header) and len(ragged) < 5:
                ragged.append(str(number))
    except csv.Error as exc:
        raise CsvProblem(
            _(
                "The file is not valid CSV near row %(row)d: %(reason)s.",
                row=_failed_row(text, delimiter),
                reason=str(exc),
            )
        ) from exc
    if ragged:
        raise CsvProblem(
            _(
                "Every row must have as many fields as the header row (%(count)d). "
                "Rows with a different number: %(rows)s. Check the separator and "
                "the quoting.",
                count=len(header),
                rows=", ".join(ragged),
            )
        )
    if total == 0:
        raise CsvProblem(_("The file has a header row but no rows of members."))
    if max_rows and total > max_rows:
        raise CsvProblem(
            _("At most %(count)d rows can be imported at once.", count=max_rows)
        )
    return header, total


def _header(fields: list[str]) -> list[str]:
    if len(fields) > MAX_COLUMNS:
        raise CsvProblem(_("At most %(count)d columns.", count=MAX_COLUMNS))
    if any(LOOKS_LIKE_EMAIL.match(f.strip()) for f in fields):
        raise CsvProblem(
            _(
                "The first row must name the columns (for example: email, "
                "first name), but it holds an e-mail address. Add a header row."
            )
        )
    return [
        (name.strip()[:64] or _("Column %(number)d", number=i))
        for i, name in enumerate(fields, start=1)
    ]


def _failed_row(text: str, delimiter: str) -> int:
    number = 0
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for number, _fields in enumerate(rows, start=1):  # noqa: B007
            pass
    except csv.Error:
        return number + 1
    return number


def preview(text: str, delimiter: str, count: int = 5) -> list[list[str]]:
    """The first data rows, for the mapping page."""
    rows = []
    for number, fields in reader(text, delimiter):
        if number == 1:
            continue
        rows.append(fields)
        if len(rows) == count:
            break
    return rows


def guess_roles(columns: list[str]) -> list[str]:
    """A first mapping: known names get their role, other columns are attributes."""
    roles, used = [], set()
    for name in columns:
        simple = name.strip().lower().replace("_", " ")
        role = next(
            (
                r
                for r, names in ROLE_GUESSES.items()
                if (simple in names or simple.replace(" ", "") in names)
                and r not in used
            ),
            "attribute",
        )
        used.add(role)
        roles.append(role)
    return roles


def check_roles(roles: list[str], columns: list[str]) -> None:
    """A mapping must have one e-mail column and each name field at most once."""
    if len(roles) != len(columns) or any(r not in ROLES for r in roles):
        raise CsvProblem(_("Choose what each column holds."))
    if "email" not in roles:
        raise CsvProblem(_("Choose the column that holds the e-mail addresses."))
    if roles.count("attribute") > MAX_ATTRIBUTES:
        raise CsvProblem(
            _("At most %(count)d columns can be attributes.", count=MAX_ATTRIBUTES)
        )
    for role in SINGLE_ROLES:
        if roles.count(role) > 1:
            raise CsvProblem(
                _("Only one column can be used as %(role)s.", role=role_label(role))
            )


def role_label(role: str) -> str:
    """A column role in the page's language."""
    labels = {
        "email": _("e-mail"),
        "first_name": _("first name"),
        "last_name": _("last name"),
        "language": _("language"),
        "attribute": _("attribute"),
        "ignore": _("ignore"),
    }
    return labels[role]


def safe_cell(value: Any) -> str:
    """A cell that a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


def csv_download(lines: Iterator[list[Any]], filename: str) -> Response:
    """A streamed CSV download: UTF-8 with BOM (for Excel), formulas neutralised."""

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        yield "\ufeff"  # the BOM tells Excel the file is UTF-8
        for count, line in enumerate(lines, start=1):
            writer.writerow([safe_cell(cell) for cell in line])
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
