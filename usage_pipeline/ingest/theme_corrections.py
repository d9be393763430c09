"""The producer's theme corrections ($USAGE_DATA_DIR/theme_corrections.csv): a correction always wins."""

from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import dagster as dg

from usage_pipeline.ingest.producer_csv import ProducerFile, build_file_asset, read_rows
from usage_pipeline.insights.themes import THEMES
from usage_pipeline.warehouse import Column

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


CORRECTIONS_FILE = ProducerFile(
    key=CORRECTIONS_KEY,
    path_of=attrgetter("theme_corrections_file"),
    table=CORRECTIONS_TABLE,
    description=CORRECTIONS_DESCRIPTION,
    columns=CORRECTIONS_COLUMNS,
    check_name=CORRECTIONS_VALID,
    noun="theme corrections",
    known_sql="SELECT DISTINCT discussion_id FROM raw.discussions",
    parse=parse_corrections,
)


theme_corrections = build_file_asset(CORRECTIONS_FILE, "every row of theme_corrections.csv was applied")
