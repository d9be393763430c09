"""The digest's pages: Jinja2 templates (templates/) rendered to HTML (escaped, charts inline) and Markdown, in the
reader's language (Jinja2's i18n extension on the gettext catalogs of `language`)."""

import functools
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from usage_pipeline.insights.digest.figures import Row
from usage_pipeline.insights.digest.formatting import md_text, md_url, safe_url
from usage_pipeline.insights.language import Reader

TEMPLATES = Path(__file__).parent / "templates"


def inline_svg(document: str, label: str) -> Markup:
    """An SVG document as an element for HTML: prolog and doctype dropped, described for screen readers."""
    element = document[document.index("<svg") :]
    return Markup(element.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1))


def activity(reader: Reader, person: Row) -> str:
    """What a reuser did with a dataset, in words: ``published 2 reuses (api); last active 3 Nov 2026``."""
    parts = []
    if person["reuses"]:
        types = ", ".join(reader.reuse_type(code.strip()) for code in (person["reuse_types"] or "").split(","))
        parts.append(
            reader.ngettext("published %(num)s reuse (%(types)s)", "published %(num)s reuses (%(types)s)",
                            person["reuses"], types=types)
        )  # fmt: skip
    if person["discussions"]:
        parts.append(reader.ngettext("opened %(num)s discussion", "opened %(num)s discussions", person["discussions"]))
    if person["replies"]:
        parts.append(reader.ngettext("posted %(num)s reply", "posted %(num)s replies", person["replies"]))
    if person["last_active"]:
        parts.append(reader.gettext("last active %(day)s", day=reader.day(person["last_active"])))
    return reader.gettext("; ").join(parts)  # French puts a space before the semicolon


def theme_counts(reader: Reader, counts: list[tuple[str, int]]) -> str:
    """``Usability (4), Freshness (2)``, or an em dash."""
    return ", ".join(f"{reader.theme(theme)} ({reader.number(count)})" for theme, count in counts) or "—"


@functools.cache
def environment(reader: Reader, autoescape: bool) -> jinja2.Environment:
    """The templates' environment for ``reader``: its gettext catalog, number and date formats."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(reader.translations, newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(
        number=reader.number,
        signed=reader.signed,
        percent=reader.percent,
        day=reader.day,
        days=reader.days,
        month_name=reader.month_name,
        theme=reader.theme,
        theme_hint=reader.theme_hint,
        reuse_type=reader.reuse_type,
        reuser_type=reader.reuser_type,
        lead_source=reader.lead_source,
        change_short=reader.change_short,
        change_text=reader.change_text,
        safe_url=safe_url,
        md=md_text,
        md_url=md_url,
    )
    env.globals.update(
        language=reader.language,
        activity=functools.partial(activity, reader),
        theme_counts=functools.partial(theme_counts, reader),
    )
    return env


def _top_tables(reader: Reader, context: Row) -> list[tuple]:
    """The two top-datasets tables: key, heading, column header, text when empty, rows."""
    return [
        ("views", reader.gettext("Most viewed"), reader.gettext("Views, last 7 days"),
         reader.gettext("No views recorded this week."), context["top_views"]),
        ("downloads", reader.gettext("Most downloaded"), reader.gettext("Downloads, last 7 days"),
         reader.gettext("No downloads recorded this week."), context["top_downloads"]),
    ]  # fmt: skip


def content_id(image_file: str) -> str:
    """The Content-ID an e-mail gives the image ``image_file`` (``cid:`` links point to it)."""
    return f"{image_file}@usage-pipeline"


def email_image(image_file: str, label: str) -> Markup:
    """An ``<img>`` showing the image attached to the e-mail under `content_id`."""
    return Markup(f'<img src="cid:{escape(content_id(image_file))}" alt="{escape(label)}" width="720">')


def render_html(reader: Reader, context: Row, charts: list[Row], *, for_email: bool = False) -> str:
    """The HTML digest, charts inline as SVG; ``for_email``: as images attached to the e-mail (their ``image``
    file), which mail clients show where they show no SVG."""
    inline = [
        {
            **chart,
            "element": email_image(chart["image"], chart["title"])
            if for_email
            else inline_svg(chart["svg"], chart["title"]),
        }
        for chart in charts
    ]
    template = environment(reader, autoescape=True).get_template("digest.html.j2")
    return template.render(**context, charts=inline, top_tables=_top_tables(reader, context))


def render_markdown(reader: Reader, context: Row, charts: list[Row]) -> str:
    """The Markdown digest; each chart has a ``file`` it links to."""
    template = environment(reader, autoescape=False).get_template("digest.md.j2")
    return template.render(**context, charts=charts, top_tables=_top_tables(reader, context))
