"""staging.discussion_themes: the theme of every discussion (what reusers write about), a Python-built model."""

import json

import duckdb
import polars as pl

from usage_pipeline.insights.themes import THEMES, classify
from usage_pipeline.models import PythonModel
from usage_pipeline.warehouse import Column, registered

_THREADS = """
with titles as (
    select discussion_id, arg_max(payload ->> '$.title', snapshot_date) as title
    from raw.discussions
    group by discussion_id
)
select titles.discussion_id, titles.title,
    coalesce(list(messages.content order by messages.position) filter (where not messages.is_producer), [])
        as reuser_messages
from titles
left join staging.discussion_messages as messages using (discussion_id)
group by titles.discussion_id, titles.title
"""


def theme_rows(threads: list[tuple[str, str | None, list[str]]]) -> pl.DataFrame:
    """Classify each (discussion_id, title, reuser messages) thread."""
    rows = []
    for discussion_id, title, messages in threads:
        verdict = classify(title or "", [message or "" for message in messages])
        rows.append(
            {
                "discussion_id": discussion_id,
                "theme": verdict.theme,
                "evidence": list(verdict.evidence),
                "scores": json.dumps(verdict.scores, sort_keys=True),
            }
        )
    schema = {"discussion_id": pl.String, "theme": pl.String, "evidence": pl.List(pl.String), "scores": pl.String}
    return pl.DataFrame(rows, schema=schema)


def build_discussion_themes(conn: duckdb.DuckDBPyConnection) -> None:
    """Classify every discussion's latest thread into staging.discussion_themes (inside the caller's transaction)."""
    themes = theme_rows(conn.execute(_THREADS).fetchall())
    with registered(conn, "themes_frame", themes):
        conn.execute("CREATE OR REPLACE TABLE staging.discussion_themes AS SELECT * FROM themes_frame")


DISCUSSION_THEMES = PythonModel(
    schema="staging",
    name="discussion_themes",
    description=(
        "The theme of every discussion on a followed dataset, decided offline from its title and the reusers' "
        f"messages by a French lexicon ({', '.join(THEMES)}), with the terms that decided it."
    ),
    grain=("discussion_id",),
    columns={
        "discussion_id": Column("VARCHAR", "data.gouv.fr discussion id."),
        "theme": Column("VARCHAR", f"What the discussion is about: {', '.join(THEMES)}."),
        "evidence": Column("VARCHAR[]", "The words of the discussion that decided the theme (empty for other)."),
        "scores": Column("VARCHAR", "JSON: the score of each theme."),
    },
    reads=frozenset({"raw.discussions", "staging.discussion_messages"}),
    build=build_discussion_themes,
    source="usage_pipeline/insights/discussion_themes.py",
)
