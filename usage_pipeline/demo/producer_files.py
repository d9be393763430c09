"""The files a producer keeps in its data folder, written for the demo: a community event, a reuser survey, a
theme correction and the digest's recipients."""

import csv
import datetime as dt
import io
import random

from usage_pipeline.data_dir import DataDir
from usage_pipeline.demo.portal_server import World
from usage_pipeline.surveys.config import CONFIG_FILE

SURVEY_FILE = "enquete-reutilisateurs-demo.csv"
SURVEY_COLUMNS = {
    "dataset": "Quel jeu de données utilisez-vous ?",
    "submitted_at": "Date de soumission",
    "satisfaction": "Note (1 à 5)",
    "needs": "Qu'est-ce qui vous manque ?",
    "reuse_type": "Type d'usage",
    "respondent_organization": "Organisation",
    "email": "Courriel",
}
NEEDS = (
    "Une mise à jour plus fréquente, idéalement chaque mois.",
    "Un dictionnaire des colonnes : l'unité de certains champs n'est pas indiquée.",
    "Le fichier de l'an dernier n'est plus téléchargeable, le lien renvoie une erreur.",
    "Des valeurs négatives apparaissent dans la colonne montant, est-ce normal ?",
    "Rien de particulier, merci pour ces données !",
    "Un export GeoJSON en plus du CSV faciliterait la cartographie.",
)
REUSE_TYPES = ("Application", "Visualisation", "Étude", "Article de presse")
RESPONDENTS = ("Association Données Citoyennes", "Bureau d'études Territoires", "Université de Lyonville", "")


def _most_viewed(world: World, count: int) -> list[str]:
    live = [key for key in world.entries if key not in world.deleted]
    return sorted(live, key=lambda key: -world.entries[key]["dataset"]["metrics"].get("views", 0))[:count]


def write_events(data_dir: DataDir, world: World, first_day: dt.date) -> None:
    """events.csv: a workshop on the two most viewed datasets, the day before the demo's first day."""
    datasets = " ".join(_most_viewed(world, 2))
    day = first_day - dt.timedelta(days=1)
    data_dir.events_file.write_text(
        f"date,title,kind,datasets\n{day.isoformat()},Atelier découverte des données ouvertes,workshop,{datasets}\n",
        encoding="utf-8",
    )


def write_theme_corrections(data_dir: DataDir, world: World) -> None:
    """theme_corrections.csv: the producer files the first discussion of its most viewed dataset under usability."""
    discussion = next(
        discussion
        for key in _most_viewed(world, len(world.entries))
        for discussion in world.entries[key]["discussions"]
    )
    data_dir.theme_corrections_file.write_text(f"discussion_id,theme\n{discussion['id']},usability\n", encoding="utf-8")


ALERTS_ADDRESS = "equipe-donnees@demo.example.fr"


def write_recipients(data_dir: DataDir, organizations: tuple[str, ...]) -> None:
    """recipients.yaml: each organization's weekly digest to one address of its own, the alerts to a team."""
    lines = "".join(f"  {slug}: [donnees@{slug}.example.fr]\n" for slug in organizations)
    data_dir.recipients_file.write_text(
        f"# Written by `usage-pipeline demo`.\norganizations:\n{lines}alerts: [{ALERTS_ADDRESS}]\n", encoding="utf-8"
    )


def write_survey(data_dir: DataDir, world: World, first_day: dt.date, *, seed: int) -> None:
    """A reuser survey as a form tool exports it (CSV, French headers), and the surveys.yaml that maps it."""
    rng = random.Random(f"survey:{seed}")
    surveys = data_dir.surveys_dir
    surveys.mkdir(parents=True, exist_ok=True)
    mapping = "\n".join(f'      {field}: "{header}"' for field, header in SURVEY_COLUMNS.items())
    (surveys / CONFIG_FILE).write_text(
        f'# Written by `usage-pipeline demo`.\nfiles:\n  - pattern: "enquete-*.csv"\n    columns:\n{mapping}\n',
        encoding="utf-8",
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow(SURVEY_COLUMNS.values())
    datasets = _most_viewed(world, 4)
    for number in range(9):
        dataset = world.entries[datasets[number % len(datasets)]]["dataset"]
        answered = dt.datetime.combine(first_day - dt.timedelta(days=rng.randint(1, 20)), dt.time(9 + number))
        writer.writerow(
            [
                f"https://www.data.gouv.fr/fr/datasets/{dataset['slug']}/" if number % 3 == 0 else dataset["id"],
                answered.strftime("%d/%m/%Y %H:%M"),
                rng.choice((2, 3, 4, 4, 5, 5)),
                NEEDS[number % len(NEEDS)],
                rng.choice(REUSE_TYPES),
                rng.choice(RESPONDENTS),
                f"repondant{number}@exemple.fr",
            ]
        )
    (surveys / SURVEY_FILE).write_text(buffer.getvalue(), encoding="utf-8")
