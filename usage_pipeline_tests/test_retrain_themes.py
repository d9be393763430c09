"""`usage-pipeline train-themes`: the producer's corrections teach the classifier, which is kept only if no worse."""

import json
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from usage_pipeline import cli
from usage_pipeline.data_dir import DataDir
from usage_pipeline.insights import theme_model
from usage_pipeline.insights.retrain_themes import train_themes
from usage_pipeline.insights.theme_verdicts import load_classifier

# A producer whose reusers keep asking for the Lambert 93 projection: the producer files these under freshness
# (its new releases carry the projection), which the shipped model does not guess.
LAMBERT = [
    (f"Projection Lambert 93 ({n})", [f"Bonjour, la couche {layer} existe-t-elle en Lambert 93 plutôt qu'en WGS84 ?"])
    for n, layer in enumerate(["des parcelles", "des bâtiments", "des routes", "des communes", "des rivières",
                               "des forêts", "des gares", "des écoles"])
]  # fmt: skip
NEAR_DUPLICATE = ("Lambert 93", ["La couche des lycées est-elle disponible en Lambert 93 plutôt qu'en WGS84 ?"])


def warehouse_with(path: Path, threads: list[tuple[str, list[str]]]) -> list[str]:
    """A warehouse holding these threads as discussions (title, then the opener's messages); their ids."""
    ids = [f"discussion-{number}" for number in range(len(threads))]
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA raw")
        conn.execute("CREATE SCHEMA staging")
        conn.execute("CREATE TABLE raw.discussions (discussion_id VARCHAR, payload JSON, snapshot_date DATE)")
        conn.execute(
            "CREATE TABLE staging.discussion_messages (discussion_id VARCHAR, position BIGINT, author_id VARCHAR, "
            "is_producer BOOLEAN, content VARCHAR)"
        )
        for discussion_id, (title, messages) in zip(ids, threads, strict=True):
            conn.execute(
                "INSERT INTO raw.discussions VALUES (?, ?, DATE '2026-11-20')",
                [discussion_id, json.dumps({"title": title})],
            )
            rows = [(discussion_id, position, "reuser", False, text) for position, text in enumerate(messages)]
            rows.append((discussion_id, len(messages), "producer", True, "Merci, nous regardons."))
            conn.executemany("INSERT INTO staging.discussion_messages VALUES (?, ?, ?, ?, ?)", rows)
    return ids


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    paths = DataDir(path=str(tmp_path))
    ids = warehouse_with(paths.warehouse, LAMBERT)
    rows = "".join(f"{discussion_id},freshness\n" for discussion_id in ids)
    paths.theme_corrections_file.write_text(f"discussion_id,theme\n{rows}discussion-0,weather\n", encoding="utf-8")
    return paths


def test_corrections_teach_the_model_and_it_is_kept_only_if_no_worse(data_dir: DataDir) -> None:
    shipped = theme_model.load_shipped_model()
    assert shipped.predict([NEAR_DUPLICATE])[0].theme != "freshness"
    lines: list[str] = []
    result = train_themes(data_dir, log=lines.append, repeats=1)
    out = "\n".join(lines)
    assert f"row {len(LAMBERT) + 2}: theme 'weather' is not one of" in out
    assert f"{len(LAMBERT)} corrected discussions added to {len(shipped.training.y)} training threads" in out
    assert f"before: cross-validated macro-F1 {result.before.macro_f1:.3f}" in out
    assert f"after: cross-validated macro-F1 {result.after.macro_f1:.3f}" in out
    # The corrected threads resemble each other: learnt, they are predicted right in the other folds too.
    assert result.after.macro_f1 > result.before.macro_f1 and result.kept
    assert lines[-1] == f"retrained model saved in {data_dir.theme_model_dir}: the next run classifies with it"
    retrained = load_classifier(data_dir)
    assert retrained.metadata["retrained"]["added"] == len(LAMBERT)
    assert retrained.predict([NEAR_DUPLICATE])[0].theme == "freshness"


def test_a_worse_model_is_not_kept(data_dir: DataDir, monkeypatch: pytest.MonkeyPatch) -> None:
    def worse(*args: object, repeats: int) -> tuple[theme_model.CrossValidation, theme_model.CrossValidation]:
        before, after = real(*args, repeats=1)
        return before, replace(after, macro_f1=before.macro_f1 - 0.001)

    real = theme_model.compare_retraining
    monkeypatch.setattr(theme_model, "compare_retraining", worse)
    lines: list[str] = []
    assert not train_themes(data_dir, log=lines.append, repeats=1).kept
    assert not data_dir.theme_model_dir.exists()
    assert lines[-1] == "the retrained model scores lower: nothing written, the model in use stays"


def test_nothing_to_learn_from_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    paths = DataDir(path=str(tmp_path))
    assert cli.main(["train-themes", "--data-dir", str(tmp_path)]) == 1
    assert f"{paths.theme_corrections_file}: no such file" in capsys.readouterr().err
    paths.theme_corrections_file.write_text("discussion_id,theme\nx,other\n", encoding="utf-8")
    assert cli.main(["train-themes", "--data-dir", str(tmp_path)]) == 1
    assert "no warehouse yet; run `usage-pipeline refresh` first" in capsys.readouterr().err
    warehouse_with(paths.warehouse, LAMBERT[:1])
    assert cli.main(["train-themes", "--data-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "row 2: discussion 'x' is not a known discussion" in captured.out
    assert "no valid correction to learn from" in captured.err
