"""`usage-pipeline tables` and `show`: the published copy, read from a terminal."""

from pathlib import Path

import duckdb
import pytest

from usage_pipeline import cli


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data folder whose published copy holds two documented reporting tables."""
    published = tmp_path / "data" / "published"
    published.mkdir(parents=True)
    with duckdb.connect(str(published / "usage.duckdb")) as conn:
        conn.execute("CREATE SCHEMA reporting")
        conn.execute("CREATE TABLE reporting.datasets AS SELECT 'ds-' || range AS dataset_id FROM range(30)")
        conn.execute("COMMENT ON TABLE reporting.datasets IS 'One row per followed dataset.'")
        conn.execute("CREATE TABLE reporting.reuses (reuse_id VARCHAR, title VARCHAR)")
        conn.execute("INSERT INTO reporting.reuses VALUES ('r1', 'Carte des défibrillateurs')")
        conn.execute("COMMENT ON TABLE reporting.reuses IS 'One row per reuse and dataset.'")
    return tmp_path / "data"


def test_tables_lists_names_rows_and_descriptions(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["tables", "--data-dir", str(data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("2 tables in ")
    assert lines[1].split() == ["datasets", "30", "rows", "One", "row", "per", "followed", "dataset."]
    assert lines[2].split()[:3] == ["reuses", "1", "rows"]


def test_show_prints_rows_and_says_how_many_are_left(
    data_dir: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USAGE_DATA_DIR", str(data_dir))  # the default when --data-dir is not given
    assert cli.main(["show", "reporting.datasets", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("reporting.datasets: One row per followed dataset.")
    assert "ds-2" in out and "ds-3" not in out
    assert "(3 of 30 rows; --limit shows more)" in out
    assert cli.main(["show", "reuses"]) == 0
    out = capsys.readouterr().out
    assert "Carte des défibrillateurs" in out and "--limit shows more" not in out


def test_unknown_table_names_the_tables(data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["show", "discussions; DROP TABLE x", "--data-dir", str(data_dir)]) == 1
    assert "the tables are: datasets, reuses" in capsys.readouterr().err


def test_nothing_published_yet(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["tables", "--data-dir", str(tmp_path)]) == 1
    assert "nothing published yet" in capsys.readouterr().err
