"""The producer's theme corrections ($USAGE_DATA_DIR/theme_corrections.csv): a correction always wins."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, WAREHOUSE_POOL
from usage_pipeline.ingest.producer_csv import (
    ProducerFileError,
    create_table,
    read_rows,
    replace_rows,
    unreadable_file_results,
)
from usage_pipeline.insights.themes import THEMES
from usage_pipeline.warehouse import Column, table_schema

CORRECTIONS_KEY = dg.AssetKey(["raw", "theme_corrections"])
CORRECTIONS_TABLE = "raw.theme_corrections"
CORRECTIONS_VALID = "theme_corrections_valid"
REQUIRED_COLUMNS = ("discussion_id", "theme")
CORRECTIONS_DESCRIPTION = (
    "The producer's corrections of discussion themes, from $USAGE_DATA_DIR/theme_corrections.csv "
    "(discussion_id,theme), read whole at each run. Rows naming an unknown discussion or theme are left out and "
    "reported (check theme_corrections_valid); an unreadable file keeps the previous corrections."
)
CORRECTIONS_COLUMNS = {
    "discussion_id": Column("VARCHAR", "data.gouv.fr discussion id."),
    "theme": Column("VARCHAR", f"The theme the producer gives it: {', '.join(THEMES)}."),
    "source_row": Column("INTEGER", "Row of theme_corrections.csv (the header is row 1)."),
}


@dataclass(frozen=True)
class Correction:
    discussion_id: str
    theme: str
    source_row: int


def parse_corrections(path: Path, known_discussions: set[str]) -> tuple[list[Correction], list[str]]:
    """The valid corrections of ``path`` (a later row for the same discussion wins) and a problem per bad row."""
    corrections: dict[str, Correction] = {}
    problems = []
    for number, row in read_rows(path, REQUIRED_COLUMNS):
        discussion_id, theme = row["discussion_id"], row["theme"].lower()
        if theme not in THEMES:
            problems.append(f"{path}, row {number}: theme {row['theme']!r} is not one of {', '.join(THEMES)}")
        elif discussion_id not in known_discussions:
            problems.append(f"{path}, row {number}: discussion {discussion_id!r} is not a known discussion")
        else:
            if discussion_id in corrections:
                problems.append(
                    f"{path}, row {number}: discussion {discussion_id!r} was already corrected in row "
                    f"{corrections[discussion_id].source_row}; row {number} wins"
                )
            corrections[discussion_id] = Correction(discussion_id, theme, number)
    return list(corrections.values()), problems


@dg.asset(
    key=CORRECTIONS_KEY,
    deps=[RAW_SNAPSHOT_KEY],
    description=CORRECTIONS_DESCRIPTION,
    group_name="raw",
    pool=WAREHOUSE_POOL,
    kinds={"python", "duckdb", "csv"},
    check_specs=[
        dg.AssetCheckSpec(
            CORRECTIONS_VALID, asset=CORRECTIONS_KEY, description="every row of theme_corrections.csv was applied"
        )
    ],
    metadata={"dagster/column_schema": table_schema(CORRECTIONS_COLUMNS)},
)
def theme_corrections(context: dg.AssetExecutionContext, warehouse: DuckDBResource, data_dir: DataDir):
    """Load theme_corrections.csv into raw.theme_corrections; bad rows are named in a warning and left out."""
    path = data_dir.theme_corrections_file
    with warehouse.get_connection() as conn:
        create_table(conn, CORRECTIONS_TABLE, CORRECTIONS_DESCRIPTION, CORRECTIONS_COLUMNS)
        known = {row[0] for row in conn.execute("SELECT DISTINCT discussion_id FROM raw.discussions").fetchall()}
        try:
            corrections, problems = parse_corrections(path, known) if path.exists() else ([], [])
        except ProducerFileError as error:
            context.log.warning(f"{error}; the previous corrections are kept")
            yield from unreadable_file_results(CORRECTIONS_VALID, error)
            return
        frame = pl.DataFrame(
            [correction.__dict__ for correction in corrections],
            schema={"discussion_id": pl.String, "theme": pl.String, "source_row": pl.Int32},
            orient="row",
        )
        replace_rows(conn, CORRECTIONS_TABLE, frame)
    for problem in problems:
        context.log.warning(problem)
    context.log.info(f"{len(corrections)} theme corrections from {path}")
    yield dg.MaterializeResult(metadata={"dagster/row_count": len(corrections)})
    yield dg.AssetCheckResult(
        check_name=CORRECTIONS_VALID,
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {problem}" for problem in problems) or "none")},
    )
