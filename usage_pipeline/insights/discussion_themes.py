"""staging.discussion_themes: the theme of every discussion (what reusers write about), a Python-built model.

The trained classifier (`theme_model`) decides from the title and the messages of the person who opened the
thread, never the producer's answers. The producer's corrections (raw.theme_corrections) always win. When no
model can be read, the lexicon (`themes.classify`) decides instead, and the log says so.
"""

import json
from typing import TYPE_CHECKING

import dagster as dg
import duckdb
import polars as pl

from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.theme_corrections import CORRECTIONS_TABLE
from usage_pipeline.insights.theme_verdicts import CORRECTION, Thread, load_classifier, verdicts
from usage_pipeline.insights.themes import THEMES
from usage_pipeline.models import PythonModel
from usage_pipeline.warehouse import Column, registered

if TYPE_CHECKING:
    from usage_pipeline.insights.theme_model import ThemeModel

THREADS = """
with titles as (
    select discussion_id, arg_max(payload ->> '$.title', snapshot_date) as title
    from raw.discussions
    group by discussion_id
),
openers as (
    select discussion_id, author_id from staging.discussion_messages where position = 0
)
select titles.discussion_id, titles.title,
    coalesce(
        list(messages.content order by messages.position) filter (
            where not messages.is_producer and messages.author_id is not distinct from openers.author_id
        ),
        []
    ) as opener_messages
from titles
left join openers using (discussion_id)
left join staging.discussion_messages as messages using (discussion_id)
group by titles.discussion_id, titles.title
order by titles.discussion_id
"""
SCHEMA = {
    "discussion_id": pl.String,
    "theme": pl.String,
    "theme_confidence": pl.Float64,
    "theme_source": pl.String,
    "needs_review": pl.Boolean,
    "evidence": pl.List(pl.String),
    "probabilities": pl.String,
}


def thread_texts(conn: duckdb.DuckDBPyConnection) -> dict[str, Thread]:
    """Every discussion's title and its opener's messages (the latest version of each), by discussion id."""
    return {
        discussion_id: (title or "", [message or "" for message in messages])
        for discussion_id, title, messages in conn.execute(THREADS).fetchall()
    }


def theme_rows(
    threads: dict[str, Thread], corrections: dict[str, str], classifier: "ThemeModel | None"
) -> pl.DataFrame:
    """The theme of each thread: the producer's correction, else the classifier's verdict, else the lexicon's."""
    rows = []
    for discussion_id, verdict in zip(threads, verdicts(list(threads.values()), classifier), strict=True):
        corrected = corrections.get(discussion_id)
        rows.append(
            {
                "discussion_id": discussion_id,
                "theme": corrected or verdict.theme,
                "theme_confidence": None if corrected else verdict.confidence,
                "theme_source": CORRECTION if corrected else verdict.source,
                "needs_review": not corrected and verdict.needs_review,
                "evidence": list(verdict.evidence) if verdict.theme == (corrected or verdict.theme) else [],
                "probabilities": json.dumps(verdict.probabilities) if verdict.probabilities else None,
            }
        )
    return pl.DataFrame(rows, schema=SCHEMA)


def build_discussion_themes(conn: duckdb.DuckDBPyConnection, data_dir: DataDir) -> None:
    """Classify every discussion into staging.discussion_themes (inside the caller's transaction)."""
    corrections = dict(conn.execute(f"SELECT discussion_id, theme FROM {CORRECTIONS_TABLE}").fetchall())
    themes = theme_rows(thread_texts(conn), corrections, load_classifier(data_dir))
    counts = themes.group_by("theme_source").len().sort("theme_source").rows()
    dg.get_dagster_logger().info(
        f"themes of {len(themes)} discussions: "
        + ", ".join(f"{count} by {source}" for source, count in counts)
        + f"; {themes['needs_review'].sum()} to review"
    )
    with registered(conn, "themes_frame", themes):
        conn.execute("CREATE OR REPLACE TABLE staging.discussion_themes AS SELECT * FROM themes_frame")


DISCUSSION_THEMES = PythonModel(
    schema="staging",
    name="discussion_themes",
    description=(
        f"The theme of every discussion on a followed dataset ({', '.join(THEMES)}): the producer's correction "
        "when there is one ($USAGE_DATA_DIR/theme_corrections.csv), else the trained classifier's verdict on the "
        "title and the opener's messages, with its confidence."
    ),
    grain=("discussion_id",),
    columns={
        "discussion_id": Column("VARCHAR", "data.gouv.fr discussion id."),
        "theme": Column("VARCHAR", f"What the discussion is about: {', '.join(THEMES)}."),
        "theme_confidence": Column(
            "DOUBLE", "The classifier's probability of that theme, 0 to 1 (null when corrected or by the lexicon)."
        ),
        "theme_source": Column(
            "VARCHAR",
            "Who decided: model (the trained classifier), lexicon (fallback when no model can be read) or "
            "correction (the producer).",
        ),
        "needs_review": Column(
            "BOOLEAN", "The classifier was unsure: its confidence is below the threshold recorded with the model."
        ),
        "evidence": Column("VARCHAR[]", "Words of the discussion that the lexicon ties to that theme (may be empty)."),
        "probabilities": Column("VARCHAR", "JSON: the classifier's probability of each theme (null without model)."),
    },
    reads=frozenset({"raw.discussions", "staging.discussion_messages", CORRECTIONS_TABLE}),
    build=build_discussion_themes,
    source="usage_pipeline/insights/discussion_themes.py",
)
