"""The trained discussion-theme model: safe loading, realistic French threads, retraining from the shipped feature
rows, and the recorded matrix cross-validation recomputed from them (no external text needed)."""

import hashlib
import importlib.util
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.metrics import f1_score

from usage_pipeline.insights import theme_model as tm
from usage_pipeline.insights.theme_model import THEMES, Prediction
from usage_pipeline_tests.conftest import SAMPLE_PATH

ROOT = Path(__file__).resolve().parents[1]
CV_TOLERANCE = 0.01
THEMES_ENV = "USAGE_THEMES_PATH"
THEMES_PATH = Path(
    os.environ.get(THEMES_ENV) or ROOT.parent / "shared" / "themes" / "labelled-discussions.jsonl"
).expanduser()


@pytest.fixture(scope="module")
def model() -> tm.ThemeModel:
    return tm.load_shipped_model()


def test_loads_without_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the theme model must load without pickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    loaded = tm.read_model(tm.MODEL_DIR)
    assert loaded.predict([("Lien mort", ["erreur 404"])])[0].theme == "accessibility"


def test_trusted_types_are_those_of_the_file() -> None:
    assert sorted(skops.io.get_untrusted_types(file=tm.MODEL_DIR / tm.PIPELINE_FILE)) == sorted(tm.TRUSTED)


def test_metadata_describes_the_shipped_files(model: tm.ThemeModel) -> None:
    metadata = model.metadata
    assert metadata["labels"] == list(THEMES)
    assert metadata["lexicon_sha256"] == tm.lexicon_fingerprint(), "the lexicon changed: retrain the theme model"
    assert 0 < model.confidence_threshold < 1
    X, y = tm.shipped_training_set(tm.MODEL_DIR)
    assert X.shape == (metadata["training"]["n"], metadata["training"]["features"])
    assert {theme: int((y == theme).sum()) for theme in THEMES} == metadata["training"]["by_theme"]
    ids = model.training.ids  # type: ignore[union-attr]
    lines = "".join(f"{i}\t{theme}\n" for i, theme in sorted(zip(ids.tolist(), y.tolist(), strict=True)))
    assert hashlib.sha256(lines.encode()).hexdigest() == metadata["training"]["sha256"]
    for figures in (metadata["evaluation"]["cross_validation"], metadata["evaluation"]["heldout"]["heldout"]):
        low, high = figures["ci95"]
        assert low <= figures["macro_f1"] <= high and set(figures["per_theme"]) == set(THEMES)


EXAMPLES = [
    ("accessibility", "Lien mort", ["Bonjour, le lien de téléchargement du fichier CSV renvoie une erreur 404."]),
    (
        "accessibility",
        "Impossible de télécharger",
        ["Le téléchargement échoue à chaque fois, le serveur ne répond pas."],
    ),
    ("accessibility", "API indisponible", ["L'API renvoie une erreur 502 bad gateway à chaque appel."]),
    ("freshness", "Prochaine mise à jour ?", ["Quand la prochaine mise à jour est-elle prévue ? 2024 manque."]),
    ("freshness", "", ["quand la prochaine mise à jour ?"]),
    ("freshness", "Données pas à jour", ["Le fichier n'a plus été mis à jour depuis mars 2023, est-ce normal ?"]),
    ("reliability", "Doublons", ["Le fichier contient des doublons et des valeurs fausses : des montants erronés."]),
    (
        "reliability",
        "Coordonnées incohérentes",
        ["Des établissements ont des coordonnées incohérentes, en pleine mer."],
    ),
    ("usability", "Séparateur", ["Quel séparateur est utilisé dans le CSV ? Et que signifie la colonne cod_typ ?"]),
    ("usability", "Documentation des champs", ["Existe-t-il une documentation ? À quoi correspond le champ nb_loc ?"]),
    ("other", "Merci", ["Merci beaucoup pour ce travail, bravo !"]),
    ("other", "Ajout de données", ["Serait-il possible d'ajouter le numéro SIRET des entreprises par commune ?"]),
]


def test_french_threads(model: tm.ThemeModel) -> None:
    predictions = model.predict([(title, messages) for _, title, messages in EXAMPLES])
    assert [p.theme for p in predictions] == [theme for theme, _, _ in EXAMPLES], predictions


def test_confidence_is_the_chosen_theme_probability(model: tm.ThemeModel) -> None:
    threads = [("Lien mort", ["Le lien ne fonctionne plus."]), ("", []), ("", [""]), ("Question", ["Bonjour", "?"])]
    predictions, probabilities = model.predict(threads), model.probabilities(threads)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    for prediction, row in zip(predictions, probabilities, strict=True):
        assert isinstance(prediction, Prediction) and prediction.theme in THEMES
        assert 0 < prediction.confidence <= 1 and prediction.confidence == row.max()
        assert prediction.theme == THEMES[row.argmax()]
    assert model.predict([]) == []


LAMBERT = [
    ("Projection", ["Les coordonnées sont en Lambert 93, existe-t-il une version en WGS84 ?"]),
    ("Système de coordonnées", ["Quelle projection pour les géométries ? Lambert 93 ou WGS84 ?"]),
    ("Lambert 93", ["Pourriez-vous publier les géométries en WGS84 plutôt qu'en Lambert 93 ?"]),
    ("Coordonnées WGS84", ["Les fichiers sont en Lambert 93 ; une version WGS84 serait bienvenue."]),
]
LAMBERT_PROBE = [("Projection Lambert 93", ["Peut-on avoir les coordonnées en WGS84 et non en Lambert 93 ?"])]


def test_retrain_moves_near_duplicates_toward_the_given_label(model: tm.ThemeModel, tmp_path: Path) -> None:
    label = "freshness"  # deliberately odd, so that the move can only come from the added threads
    before = model.probabilities(LAMBERT_PROBE)[0, THEMES.index(label)]
    retrained = tm.retrain(model, LAMBERT, [label] * len(LAMBERT))
    after = retrained.probabilities(LAMBERT_PROBE)[0, THEMES.index(label)]
    assert after > before + 0.2 and retrained.predict(LAMBERT_PROBE)[0].theme == label, (before, after)
    X, y = tm.shipped_training_set(retrained)
    assert X.shape[0] == tm.shipped_training_set(model)[0].shape[0] + len(LAMBERT)
    assert list(y[-len(LAMBERT) :]) == [label] * len(LAMBERT)
    tm.save_model(retrained, tmp_path)
    again = tm.read_model(tmp_path)
    assert np.allclose(again.probabilities(LAMBERT_PROBE), retrained.probabilities(LAMBERT_PROBE))
    with pytest.raises(ValueError, match="unknown themes"):
        tm.retrain(model, LAMBERT[:1], ["weather"])


def test_matrix_cross_validation_is_reproduced_from_the_shipped_rows(model: tm.ThemeModel) -> None:
    recorded = model.metadata["evaluation"]["matrix_cross_validation"]
    X, y = tm.shipped_training_set(tm.MODEL_DIR)
    found = tm.cross_validate_matrix(X, y, folds=5, repeats=3, seed=0, bootstrap=200)
    assert found.macro_f1 == pytest.approx(recorded["macro_f1"], abs=CV_TOLERANCE)
    assert found.accuracy == pytest.approx(recorded["accuracy"], abs=CV_TOLERANCE)
    for theme in THEMES:
        assert found.per_theme[theme]["f1"] == pytest.approx(recorded["per_theme"][theme]["f1"], abs=2 * CV_TOLERANCE)


@pytest.mark.sample
def test_shipped_rows_are_those_of_the_labelled_data(model: tm.ThemeModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the labelled data, the shipped ids and labels are today's labels (the model was rebuilt after a change)."""
    if not THEMES_PATH.is_file():
        pytest.skip(f"no labelled threads at {THEMES_PATH}: set {THEMES_ENV} to labelled-discussions.jsonl")
    sample, themes = SAMPLE_PATH, THEMES_PATH
    spec = importlib.util.spec_from_file_location("train_themes", ROOT / "bench" / "train_themes.py")
    script = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "train_themes", script)  # dataclasses look their module up there
    spec.loader.exec_module(script)  # type: ignore[union-attr]
    threads, _ = script.corpus(Path(themes), Path(sample))
    assert [(t.id, t.theme) for t in threads] == list(zip(model.training.ids, model.training.y, strict=True))  # type: ignore[union-attr]
    assert json.dumps(script.counts(threads)) == json.dumps(model.metadata["training"]["by_theme"])


def test_bootstrap_interval_is_that_of_sample_weighted_f1() -> None:
    """`evaluate` resamples with multinomial weights, all at once: the same interval as scikit-learn's F1 with them."""
    rng = np.random.default_rng(1)
    truth = rng.choice(THEMES, 60)
    predicted = np.where(rng.random(60) < 0.6, truth, rng.choice(THEMES, 60))
    found = tm.evaluate(truth, predicted[None], np.ones((1, 60)), bootstrap=300, seed=0)
    weights = np.random.default_rng(0).multinomial(60, np.full(60, 1 / 60), 300)
    f1 = [f1_score(truth, predicted, labels=THEMES, average="macro", zero_division=0, sample_weight=w) for w in weights]
    assert found.ci95 == pytest.approx(tuple(np.percentile(f1, [2.5, 97.5])), abs=1e-4)
    assert found.macro_f1 == pytest.approx(f1_score(truth, predicted, labels=THEMES, average="macro"), abs=1e-4)
