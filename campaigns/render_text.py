"""The plain-text part of a newsletter, made from its HTML.

Readable on its own: headings underlined, paragraphs wrapped, each link's text
followed by a number and the addresses listed under the text ("[1] https://...").
Hidden parts (the preheader, tracking helpers) and Outlook-only markup are left out.
"""

from __future__ import annotations

import re
import textwrap
from html import unescape

SKIPPED = {"head", "style", "script", "title", "template"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"}
BLOCKS = {
    "p",
    "div",
    "table",
    "tr",
    "td",
    "th",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "section",
}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
# Case-sensitive on purpose: the HTML is generated (lower case), and it is faster.
HIDDEN_STYLE = re.compile(r"display\s*:\s*none|mso-hide\s*:\s*all")
SPACES = re.compile(r"[ \t\r\f\v\xa0]{2,}|[ \t\r\f\v]")
WIDTH = 76


class _TextMaker:
    def __init__(self) -> None:
        self.paragraphs: list[str] = []
        self.words: list[str] = []
        self.skip_depth = 0
        self.heading: str | None = None
        self.link: dict | None = None
        self.urls: list[str] = []
        self.list_item = False

    # parsing
    def handle_starttag(self, tag, attrs):
        if self.skip_depth:
            if tag not in VOID:
                self.skip_depth += 1
            return
        attrs = dict(attrs)
        if tag in SKIPPED or (attrs and HIDDEN_STYLE.search(attrs.get("style") or "")):
            if tag not in VOID:
                self.skip_depth = 1
            return
        if tag == "br":
            self.words.append("\n")
        elif tag == "img" and self.link is not None and attrs.get("alt"):
            self.link["alt"] = attrs["alt"]
        elif tag == "a":
            self.link = {"href": (attrs.get("href") or "").strip(), "start": None}
            self.link["start"] = len(self.words)
        elif tag == "hr":
            self.flush()
            self.paragraphs.append("-" * 20)
        elif tag in BLOCKS:
            self.flush()
            if tag in HEADINGS:
                self.heading = tag
            elif tag == "li":
                self.list_item = True

    def handle_endtag(self, tag):
        if self.skip_depth:
            if tag not in VOID:
                self.skip_depth -= 1
            return
        if tag == "a" and self.link is not None:
            self.end_link()
        elif tag in BLOCKS:
            self.flush()

    def handle_data(self, data):
        if not self.skip_depth:
            self.words.append(data)

    # output
    def end_link(self) -> None:
        link, self.link = self.link, None
        href = link["href"]
        label = "".join(self.words[link["start"] :]).strip()
        if not label and link.get("alt"):
            self.words.append(link["alt"])
            label = link["alt"]
        if not href or href.startswith("#") or not label or label == href:
            return
        if href not in self.urls:
            self.urls.append(href)
        self.words.append(f" [{self.urls.index(href) + 1}]")

    def flush(self) -> None:
        if not self.words:
            self.heading, self.list_item = None, False
            return
        text = "".join(self.words)
        self.words = []
        # A lone no-break space (as in "7:00 PM") stays; runs of spaces become one.
        lines = [SPACES.sub(" ", line).strip(" ") for line in text.split("\n")]
        lines = [line for line in lines if line.strip()]
        if not lines:
            self.heading, self.list_item = None, False
            return
        if self.heading:
            title = " ".join(lines)
            mark = "=" if self.heading in ("h1", "h2") else "-"
            self.paragraphs.append(f"{title}\n{mark * min(len(title), WIDTH)}")
        elif self.list_item:
            self.paragraphs.append(
                "\n".join(
                    textwrap.fill(
                        line,
                        WIDTH,
                        initial_indent="- " if i == 0 else "  ",
                        subsequent_indent="  ",
                        **_NO_BREAKS,
                    )
                    for i, line in enumerate(lines)
                )
            )
        else:
            self.paragraphs.append(
                "\n".join(textwrap.fill(line, WIDTH, **_NO_BREAKS) for line in lines)
            )
        self.heading, self.list_item = None, False

    def result(self) -> str:
        self.flush()
        parts = _join_lists(self.paragraphs)
        if self.urls:
            refs = "\n".join(f"[{n}] {url}" for n, url in enumerate(self.urls, 1))
            parts.append(refs)
        return "\n\n".join(parts) + "\n"


_NO_BREAKS = {
    "break_long_words": False,
    "break_on_hyphens": False,
}


def _join_lists(paragraphs: list[str]) -> list[str]:
    """Consecutive list items without blank lines between them."""
    joined: list[str] = []
    for paragraph in paragraphs:
        if paragraph.startswith("- ") and joined and joined[-1].startswith("- "):
            joined[-1] += "\n" + paragraph
        else:
            joined.append(paragraph)
    return joined


# One tag, comment or declaration; quoted attribute values may contain ">".
TOKEN = re.compile(
    r"<!--.*?-->|<(/?)([a-zA-Z][a-zA-Z0-9:-]*)((?:[^>\"']+|\"[^\"]*\"|'[^']*')*)>"
    r"|<![^>]*>",
    re.S,
)
ATTRIBUTE = re.compile(r"""([^\s=/>]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")


def _attributes(raw: str) -> list[tuple[str, str]]:
    return [
        (m.group(1).lower(), unescape(m.group(2) or m.group(3) or m.group(4) or ""))
        for m in ATTRIBUTE.finditer(raw)
    ]


HEAD = re.compile(r"<head\b.*?</head\s*>", re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
# A hidden element holding only text, such as MJML's preheader.
HIDDEN_LEAF = re.compile(
    r"<(div|span|p|a)\b[^>]*(?:display\s*:\s*none|mso-hide\s*:\s*all)[^>]*>[^<]*</\1\s*>"
)
# A run of layout tags (MJML nests many) only separates paragraphs: one will do.
SEPARATORS = re.compile(
    r"(?:\s*</?(?:table|tbody|thead|tfoot|tr|td|th|div|center|section)\b"
    r"(?:[^>\"']+|\"[^\"]*\"|'[^']*')*>)+\s*"
)


def _simplified(html: str) -> str:
    """The same text with far fewer tags to walk through (all done by regexes)."""
    html = HIDDEN_LEAF.sub("", COMMENT.sub("", HEAD.sub("", html)))
    if HIDDEN_STYLE.search(html):
        return html  # nested hidden parts: the walk must see every tag
    return SEPARATORS.sub("<div>", html)


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML mail."""
    html = _simplified(html)
    # A small tokenizer rather than html.parser: the mail's HTML is generated
    # (well-formed) and this is several times faster on MJML's nested tables.
    maker = _TextMaker()
    position = 0
    for match in TOKEN.finditer(html):
        if match.start() > position:
            data = html[position : match.start()]
            maker.handle_data(unescape(data) if "&" in data else data)
        position = match.end()
        name = match.group(2)
        if name is None:
            continue  # a comment (Outlook's conditional markup) or <!doctype>
        name = name.lower()
        if match.group(1):
            maker.handle_endtag(name)
            continue
        raw = match.group(3)
        wanted = name in ("a", "img") or "none" in raw or "mso-hide" in raw
        maker.handle_starttag(name, _attributes(raw) if wanted else [])
    if position < len(html):
        maker.handle_data(unescape(html[position:]))
    return maker.result()
