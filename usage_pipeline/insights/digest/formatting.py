"""How the digest writes weeks, text and links: plain functions (numbers and dates: `language.Reader`)."""

import datetime as dt
import re
from typing import Any
from urllib.parse import quote, urlsplit


def week_label(day: dt.date) -> str:
    """The ISO week containing ``day``, as ``YYYY-Www``."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def shorten(text: str | None, limit: int) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis when longer than ``limit`` characters."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(",;:.") + "…"


def safe_url(url: str | None) -> str | None:
    """``url`` if it is an http(s) address (never a javascript: or data: link), else None."""
    if not url or urlsplit(url.strip()).scheme.lower() not in ("http", "https"):
        return None
    return url.strip()


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~&])")


def md_text(value: Any) -> str:
    """Text for Markdown: one line, every character that could become markup or HTML backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def md_url(url: str | None) -> str | None:
    """An http(s) address usable as a Markdown link target (spaces, parentheses and brackets encoded)."""
    url = safe_url(url)
    return quote(url, safe=":/?#@!$&'*+,;=%-._~") if url else None
