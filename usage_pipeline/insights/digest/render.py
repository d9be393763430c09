"""The digest's pages: Jinja2 templates (templates/) rendered to HTML (escaped, charts inline) and Markdown."""

from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from usage_pipeline.insights.digest.figures import Row
from usage_pipeline.insights.digest.formatting import date_text, md_text, md_url, month_name, number, percent, safe_url

TEMPLATES = Path(__file__).parent / "templates"


def inline_svg(document: str, label: str) -> Markup:
    """An SVG document as an element for HTML: prolog and doctype dropped, described for screen readers."""
    element = document[document.index("<svg") :]
    return Markup(element.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1))


def _environment(autoescape: bool) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(
        number=number,
        percent=percent,
        day=date_text,
        month_name=month_name,
        safe_url=safe_url,
        md=md_text,
        md_url=md_url,
    )
    return environment


_HTML = _environment(autoescape=True)
_MARKDOWN = _environment(autoescape=False)


def render_html(context: Row, charts: list[Row]) -> str:
    """The HTML digest, charts inline."""
    inline = [{**chart, "element": inline_svg(chart["svg"], chart["title"])} for chart in charts]
    return _HTML.get_template("digest.html.j2").render(**context, charts=inline)


def render_markdown(context: Row, charts: list[Row]) -> str:
    """The Markdown digest; each chart has a ``file`` it links to."""
    return _MARKDOWN.get_template("digest.md.j2").render(**context, charts=charts)
