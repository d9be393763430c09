"""The producer's language (USAGE_LANGUAGE): gettext catalogs and Babel's formats of numbers and dates.

Messages are written in English in the code and templates; ``locale/<language>/LC_MESSAGES/messages.po`` holds
their translation, compiled in memory when first used (no build step, no binary file in the repository).
``python -m usage_pipeline.insights.language`` brings the catalogs up to date after a message changed.
"""

import datetime as dt
import functools
import gettext
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import NullTranslations, Translations

LOCALES = {"fr": "fr_FR", "en": "en_GB"}  # USAGE_LANGUAGE -> the Babel locale of numbers and dates
DEFAULT_LANGUAGE = "fr"
SOURCE_LANGUAGE = "en"  # the messages' own language: no catalog
CATALOGS = Path(__file__).parent / "locale"
DOMAIN = "messages"
NO_VALUE = "—"


def N_(message: str) -> str:
    """Marks ``message`` for the catalogs; it is translated where it is shown."""
    return message


THEME_LABELS = {  # discussion themes: stable codes in the tables, these words for the reader
    "accessibility": N_("Accessibility"),
    "freshness": N_("Freshness"),
    "reliability": N_("Reliability"),
    "usability": N_("Usability"),
    "other": N_("Other"),
}
THEME_HINTS = {  # what each theme covers
    "accessibility": N_("cannot get to the data: dead links, failing downloads or API"),
    "freshness": N_("data not up to date, questions about the next update"),
    "reliability": N_("wrong or doubtful values, inconsistencies, duplicates"),
    "usability": N_("format, encoding, meaning of columns, documentation"),
    "other": N_("thanks, requests for new data, licensing, anything else"),
}
REUSE_TYPES = {  # udata's reuse types
    "api": N_("API"),
    "application": N_("application"),
    "hardware": N_("connected device"),
    "idea": N_("idea"),
    "news_article": N_("news article"),
    "paper": N_("paper"),
    "post": N_("post"),
    "visualization": N_("visualization"),
}
REUSER_TYPES = {"user": N_("user"), "organization": N_("organization")}
LEAD_SOURCES = {"github": "GitHub", "hal": "HAL", "portal": N_("reuses of the portal")}


class LanguageError(ValueError):
    """A language with no catalog."""


def check_language(language: str) -> str:
    """``language`` if the digest can be written in it, else a LanguageError naming the choices."""
    if language not in LOCALES:
        raise LanguageError(f"USAGE_LANGUAGE={language!r} is not available: use one of {', '.join(sorted(LOCALES))}")
    return language


def catalog_path(language: str) -> Path:
    return CATALOGS / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def compiled(language: str) -> NullTranslations:
    """The translations of ``language``, its ``.po`` catalog compiled in memory."""
    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    with catalog_path(language).open("rb") as file:
        catalog = read_po(file, locale=LOCALES[language])
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


@dataclass(frozen=True)
class Reader:
    """Words, numbers and dates as the producer's people read them, in ``language``."""

    language: str
    translations: gettext.NullTranslations
    locale: Locale  # of the numbers and dates

    def gettext(self, message: str, **values: Any) -> str:
        text = self.translations.gettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, count: int, **values: Any) -> str:
        return self.translations.ngettext(singular, plural, count) % {"num": count, **values}

    def number(self, value: float | None, digits: int = 0) -> str:
        """``1 234`` in French, ``1,234`` in English; an em dash for no value."""
        if value is None:
            return NO_VALUE
        return format_decimal(value, format="#,##0" + ("." + "0" * digits if digits else ""), locale=self.locale)

    def signed(self, value: int) -> str:
        """``+12``, ``−3`` (a minus sign, not a hyphen), ``0``."""
        return ("+" if value > 0 else "−" if value < 0 else "") + self.number(abs(value))

    def percent(self, value: float | None) -> str:
        """``75 %`` in French, ``75%`` in English; an em dash for no value."""
        return NO_VALUE if value is None else format_percent(value, locale=self.locale)

    def day(self, value: dt.date | dt.datetime | None) -> str:
        """``30 nov. 2026`` in French, ``30 Nov 2026`` in English."""
        return NO_VALUE if value is None else format_date(value, "d MMM y", locale=self.locale)

    def short_day(self, value: dt.date) -> str:
        """``30 nov.``; ``30 Nov``."""
        return format_date(value, "d MMM", locale=self.locale)

    def month_name(self, month: str) -> str:
        """``2026-11`` as ``novembre 2026``; ``November 2026``."""
        return format_date(dt.date.fromisoformat(f"{month}-01"), "LLLL y", locale=self.locale)

    def month_tick(self, month: str) -> str:
        """``2026-11`` as a chart's axis label on two lines: ``nov.`` then ``2026``."""
        return format_date(dt.date.fromisoformat(f"{month}-01"), "LLL'\n'y", locale=self.locale)

    def days(self, count: int) -> str:
        """``1 jour``, ``3 jours``."""
        return self.ngettext("%(num)s day", "%(num)s days", count, num=self.number(count))

    def theme(self, code: str | None) -> str:
        """A discussion theme's label (``other`` for none)."""
        return self.gettext(THEME_LABELS.get(code or "other", code or "other"))

    def theme_hint(self, code: str | None) -> str:
        hint = THEME_HINTS.get(code or "other")
        return self.gettext(hint) if hint else ""

    def reuse_type(self, code: str | None) -> str:
        return self.gettext(REUSE_TYPES.get(code or "", N_("reuse"))) if code else self.gettext("reuse")

    def lead_source(self, codes: str) -> str:
        """``github,hal`` as ``GitHub, HAL``."""
        return ", ".join(self.gettext(LEAD_SOURCES.get(code, code)) for code in codes.split(","))

    def reuser_type(self, code: str | None) -> str:
        return self.gettext(REUSER_TYPES.get(code or "user", code or "user"))

    def change_short(self, change: dict[str, Any]) -> str:
        """A change for a table: ``+12 (+50 %)``, ``no change``, ``not enough history yet``."""
        if change["direction"] == "none":
            return self.gettext("not enough history yet")
        if change["direction"] == "flat":
            return self.gettext("no change")
        text = self.signed(change["difference"])
        if change["ratio"] is None:
            return self.gettext("%(change)s (none before)", change=text)
        sign = "+" if change["difference"] > 0 else "−"
        return f"{text} ({sign}{self.percent(abs(change['ratio']))})"

    def change_text(self, change: dict[str, Any]) -> str:
        """A change as a phrase: ``+12 (+50 %) vs the 7 days before``."""
        if change["direction"] == "none":
            return self.gettext("not enough history yet to compare")
        if change["direction"] == "flat":
            return self.gettext("same as the 7 days before")
        return self.gettext("%(change)s vs the 7 days before", change=self.change_short(change))


@functools.cache
def reader(language: str = DEFAULT_LANGUAGE) -> Reader:
    """The reader of ``language`` (its catalog compiled once per process)."""
    return Reader(check_language(language), compiled(language), Locale.parse(LOCALES[language]))


def update_catalogs() -> list[Path]:
    """Extract every message of the package (code: ``_``/``N_``/``gettext``/``ngettext``; templates: Jinja2's i18n
    tags) and merge it into each catalog; returns the catalogs written. New messages are left untranslated."""
    from babel.messages.pofile import write_po

    template = extracted_messages()
    written = []
    for language in sorted(set(LOCALES) - {SOURCE_LANGUAGE}):
        path = catalog_path(language)
        with path.open("rb") as file:
            catalog = read_po(file, locale=LOCALES[language])
        template.creation_date = catalog.creation_date  # the header changes only with the messages
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        with path.open("wb") as file:
            write_po(file, catalog, width=120, omit_header=False, sort_output=True, include_lineno=False)
        written.append(path)
    return written


def extracted_messages() -> Any:
    """A Babel catalog of every message the package shows (no translation)."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_dir

    package = Path(__file__).resolve().parents[1]
    method_map = [("**.py", "python"), ("**/templates/**.j2", "jinja2.ext:babel_extract")]
    options = {"**/templates/**.j2": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
    keywords = {"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}
    catalog = Catalog(project="usage_pipeline", msgid_bugs_address="", last_translator="usage_pipeline maintainers",
                      language_team="usage_pipeline maintainers")  # fmt: skip
    for filename, line, message, _comments, context in extract_from_dir(
        str(package), method_map, options, keywords=keywords, comment_tags=()
    ):
        catalog.add(message, None, [(filename, line)], context=context)
    return catalog


if __name__ == "__main__":
    for path in update_catalogs():
        print(f"updated {path}")
