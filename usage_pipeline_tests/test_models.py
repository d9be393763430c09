"""SQL models: headers parsed, dependencies read from the SQL, bad files and bad selects refused cleanly."""

from pathlib import Path

import duckdb
import pytest

from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.assets import RAW_TABLE_ASSETS
from usage_pipeline.model_catalog import all_models
from usage_pipeline.models import ModelError, load_models, materialize_model, parse_model
from usage_pipeline.python_tables import PYTHON_TABLE_ASSETS

HEADER = """-- reporting.example
-- An example table.
-- grain: id
-- columns:
--   id INTEGER: The id.
--   label VARCHAR: The label.
"""


def write_model(root: Path, text: str, name: str = "example") -> Path:
    path = root / "reporting" / f"{name}.sql"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_every_model_is_documented_and_its_dependencies_parsed() -> None:
    models = {model.table: model for model in all_models()}
    assert {"reporting.dataset_usage_daily", "reporting.discussions", "reporting.reuses"} <= set(models)
    for model in models.values():
        assert model.description and model.grain and model.columns, model.source
        assert set(model.grain) <= set(model.columns), model.source
    assert models["reporting.discussions"].upstream_tables() == {
        "raw.discussions",
        "raw.dataset_snapshots",
        "raw.fetch_failures",
        "staging.discussion_messages",
        "staging.discussion_themes",
        "reporting.datasets",
    }
    # CTE names (live, bounds, gone) are not tables
    assert models["reporting.datasets"].upstream_tables() == {"staging.dataset_snapshots"}


def test_header_problems_name_the_file(tmp_path: Path) -> None:
    path = write_model(tmp_path, "select 1 as id")
    with pytest.raises(ModelError, match=str(path)):
        parse_model(path)
    path = write_model(tmp_path, HEADER.replace("-- grain: id\n", "") + "select 1 as id, 'a' as label")
    with pytest.raises(ModelError, match="grain"):
        parse_model(path)


def test_unknown_upstream_table_is_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path, HEADER + "select id, label from raw.nowhere")
    with pytest.raises(ModelError, match=r"raw\.nowhere") as error:
        load_models(tmp_path)
    assert str(path) in str(error.value)


def test_undocumented_column_keeps_the_previous_table(tmp_path: Path) -> None:
    good = parse_model(write_model(tmp_path, HEADER + "select 1 as id, 'a' as label"))
    bad = parse_model(write_model(tmp_path, HEADER + "select 2 as id, 'b' as label, 3 as extra"))
    with duckdb.connect() as conn:
        assert materialize_model(conn, good, DataDir(path=str(tmp_path))) == 1
        with pytest.raises(ModelError, match="extra"):
            materialize_model(conn, bad, DataDir(path=str(tmp_path)))
        assert conn.execute("SELECT id, label FROM reporting.example").fetchall() == [(1, "a")]
        comment = conn.execute("SELECT comment FROM duckdb_tables() WHERE table_name = 'example'").fetchone()[0]
        assert comment == "An example table."


def test_the_architecture_page_says_where_every_table_comes_from() -> None:
    """docs/architecture.md names every table not built from a SQL file, and the README lists every report."""
    root = Path(__file__).resolve().parents[1]
    architecture = (root / "docs" / "architecture.md").read_text(encoding="utf-8")
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert [table for table in {**RAW_TABLE_ASSETS, **PYTHON_TABLE_ASSETS} if f"`{table}`" not in architecture] == []
    reports = [model.table for model in all_models() if model.schema == "reporting"]
    assert [table for table in reports if f"`{table}`" not in readme] == []
