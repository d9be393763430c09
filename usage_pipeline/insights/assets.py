"""Python-built tables: the theme of every discussion (what reusers write about)."""

import json

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, WAREHOUSE_POOL
from usage_pipeline.insights.themes import THEMES, classify
from usage_pipeline.warehouse import Column, comment_table, registered, table_schema, transaction

DISCUSSION_THEMES_KEY = dg.AssetKey(["staging", "discussion_themes"])
DISCUSSION_THEMES_TABLE = "staging.discussion_themes"
DISCUSSION_THEMES_DESCRIPTION = (
    "The theme of every discussion on a followed dataset, decided offline from its title and the reusers' "
    f"messages by a French lexicon ({', '.join(THEMES)}), with the terms that decided it."
)
DISCUSSION_THEMES_COLUMNS = {
    "discussion_id": Column("VARCHAR", "data.gouv.fr discussion id."),
    "theme": Column("VARCHAR", f"What the discussion is about: {', '.join(THEMES)}."),
    "evidence": Column("VARCHAR[]", "The words of the discussion that decided the theme (empty for other)."),
    "scores": Column("VARCHAR", "JSON: the score of each theme."),
}

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


@dg.asset(
    key=DISCUSSION_THEMES_KEY,
    deps=[RAW_SNAPSHOT_KEY, dg.AssetKey(["staging", "discussion_messages"])],
    description=DISCUSSION_THEMES_DESCRIPTION,
    group_name="staging",
    pool=WAREHOUSE_POOL,
    kinds={"python", "duckdb"},
    metadata={
        "grain": "discussion_id",
        "dagster/column_schema": table_schema(DISCUSSION_THEMES_COLUMNS),
    },
)
def discussion_themes(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
    """Rebuild staging.discussion_themes from every discussion's latest snapshot."""
    with warehouse.get_connection() as conn:
        themes = theme_rows(conn.execute(_THREADS).fetchall())
        with transaction(conn), registered(conn, "themes_frame", themes):
            conn.execute(f"CREATE OR REPLACE TABLE {DISCUSSION_THEMES_TABLE} AS SELECT * FROM themes_frame")
            comment_table(conn, DISCUSSION_THEMES_TABLE, DISCUSSION_THEMES_DESCRIPTION, DISCUSSION_THEMES_COLUMNS)
    counts = dict(themes.group_by("theme").len().iter_rows())
    context.log.info(f"{themes.height} discussions classified: {counts}")
    return dg.MaterializeResult(
        metadata={"dagster/row_count": themes.height, "by_theme": dg.MetadataValue.json(counts)}
    )
