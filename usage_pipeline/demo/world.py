"""Synthetic French public-sector open-data worlds, fixture-shaped, and their day-to-day activity.

`generate_world` builds organizations (with members), datasets, resources, discussions, reuses and 24
months of metrics API rows with the same keys as the data.gouv.fr fixture (early-2025 shapes), so the
ingestion code reads both. `advance_day` plays one day of activity on a world.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import math
import random
import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from usage_pipeline.dates import month_index, month_key_of_index
from usage_pipeline.demo.portal_server import World

PORTAL = "https://www.data.gouv.fr"
STATIC = "https://static.data.gouv.fr"
METRICS_MONTHS = 24
FIRST_USER_DATE = dt.datetime(2014, 1, 1, tzinfo=dt.UTC)
FIRST_DATASET_DATE = dt.datetime(2016, 1, 1, tzinfo=dt.UTC)

FIRST_NAMES = (
    "Camille", "Louis", "Léa", "Hugo", "Chloé", "Nathan", "Manon", "Lucas", "Inès", "Jules", "Emma", "Théo",
    "Sarah", "Mathis", "Juliette", "Arthur", "Zoé", "Gabriel", "Anaïs", "Raphaël", "Élodie", "Nicolas",
    "Aurélie", "Julien", "Céline", "Maxime", "Pauline", "Antoine", "Margaux", "Benoît",
)  # fmt: skip
LAST_NAMES = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
    "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier",
    "Morel", "Girard", "André", "Mercier", "Dupont", "Lambert", "Bonnet", "François", "Le Gall", "Kerjean",
)  # fmt: skip
PLACES = (
    "Lyonville", "Marseillac", "Rennesbourg", "Toulouzac", "Nantelieu", "Lillemont", "Grenobelle",
    "Dijonnais", "Brestville", "Bordemer", "Montclair-sur-Loire", "Saint-Aubin-les-Vignes",
)  # fmt: skip
ORGANIZATION_PATTERNS: tuple[tuple[str, str | None], ...] = (
    ("Ville de {place}", None),
    ("Agence régionale de l'eau du bassin de {place}", "AREB"),
    ("Métropole de {place}", None),
    ("Département de {place}", None),
    ("Syndicat mixte des transports de {place}", "SMT"),
    ("Communauté d'agglomération de {place}", "CA"),
    ("Centre hospitalier de {place}", "CH"),
    ("Office de tourisme de {place}", None),
)
THEMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Budget primitif", ("budget", "finances-publiques")),
    ("Subventions versées aux associations", ("subventions", "associations")),
    ("Qualité de l'eau potable", ("eau", "sante")),
    ("Niveau des nappes phréatiques", ("eau", "environnement")),
    ("Stations d'épuration", ("eau", "assainissement")),
    ("Horaires des transports en commun (GTFS)", ("transport", "mobilite")),
    ("Comptages vélo", ("velo", "mobilite")),
    ("Bornes de recharge pour véhicules électriques", ("irve", "mobilite")),
    ("Parkings publics et places disponibles", ("stationnement", "mobilite")),
    ("Défibrillateurs automatisés externes", ("dae", "sante")),
    ("Équipements sportifs", ("sport", "equipements")),
    ("Arbres d'alignement", ("arbres", "environnement")),
    ("Qualité de l'air", ("air", "environnement")),
    ("Consommation énergétique des bâtiments publics", ("energie", "batiments")),
    ("Délibérations du conseil", ("deliberations", "transparence")),
    ("Marchés publics attribués", ("marches-publics", "commande-publique")),
    ("Prénoms des nouveau-nés", ("etat-civil", "prenoms")),
    ("Menus de la restauration scolaire", ("cantine", "education")),
    ("Permis de construire délivrés", ("urbanisme", "logement")),
    ("Base adresse locale", ("adresses", "bal")),
    ("Travaux de voirie en cours", ("voirie", "travaux")),
    ("Points d'apport volontaire du verre", ("dechets", "tri")),
    ("Fréquentation des piscines municipales", ("sport", "frequentation")),
    ("Zones inondables", ("risques", "inondation")),
)
FORMATS = {
    "csv": "text/csv",
    "json": "application/json",
    "geojson": "application/geo+json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FREQUENCIES = ("annual", "monthly", "weekly", "daily", "quarterly", "punctual", "irregular", "unknown")
LICENSES = ("lov2", "lov2", "lov2", "odc-odbl", "cc-by")
QUESTIONS = (
    ("Fichier {year} manquant", "Bonjour,\n\nLe fichier de l'année {year} n'apparaît plus dans les "
     "ressources. Est-il possible de le republier ?\n\nMerci d'avance."),
    ("Fréquence de mise à jour", "Bonjour, les données ne semblent plus mises à jour depuis plusieurs mois. "
     "Une actualisation est-elle prévue, et à quelle fréquence ?"),
    ("Valeurs incohérentes", "Bonjour, plusieurs lignes présentent des valeurs négatives dans la colonne "
     "« {column} ». S'agit-il d'une erreur de saisie ?"),
    ("Problème d'encodage", "Bonjour, les caractères accentués s'affichent mal à l'ouverture du fichier "
     "(« Ã© » à la place de « é »). Le fichier est-il bien encodé en UTF-8 ?"),
    ("Séparateur de colonnes", "Bonjour, le CSV utilise la virgule comme séparateur alors que certains "
     "libellés en contiennent, ce qui décale les colonnes. Serait-il possible de passer au point-virgule ?"),
    ("Lien de téléchargement cassé", "Bonjour, le lien vers la ressource renvoie une erreur 404. "
     "Pouvez-vous vérifier ?"),
    ("Signification de la colonne « {column} »", "Bonjour, pouvez-vous préciser l'unité de la colonne "
     "« {column} » ? Un dictionnaire des données serait bienvenu."),
)  # fmt: skip
COLUMNS = ("montant", "date_maj", "code_insee", "valeur", "nb_usagers", "latitude")
PRODUCER_ANSWERS = (
    "Bonjour, merci pour votre signalement. Le fichier a été corrigé et republié.",
    "Bonjour, la mise à jour est prévue pour la fin du mois. Nous vous tiendrons informé ici.",
    "Bonjour, il s'agissait d'une erreur lors de l'export ; les valeurs sont désormais corrigées.",
    "Bonjour, nous avons ajouté une ressource de documentation qui décrit chaque colonne.",
    "Bonjour, le fichier est désormais encodé en UTF-8 avec le point-virgule comme séparateur.",
)
COMMUNITY_ANSWERS = (
    "Même constat de mon côté, je suis intéressé par une réponse.",
    "En attendant, vous pouvez ouvrir le fichier en précisant l'encodage latin-1.",
    "Les données de l'année précédente sont disponibles dans l'archive du site de la collectivité.",
    "+1, cela bloque aussi notre réutilisation.",
)
THANKS = "Merci beaucoup pour votre retour rapide !"
REUSE_TYPES = ("application", "visualization", "news_article", "paper", "api")
REUSE_TYPE_WEIGHTS = (0.4, 0.3, 0.12, 0.1, 0.08)
REUSE_TITLES = {
    "application": ("Application mobile « {subject} »", "Simulateur : {subject}"),
    "visualization": ("Carte interactive : {subject}", "Tableau de bord : {subject}"),
    "news_article": ("Ce que révèlent les données sur {subject} à {place}",),
    "paper": ("Étude statistique : {subject} à {place}",),
    "api": ("API {subject}",),
}
REUSE_TOPICS = (
    "transport_and_mobility", "environment_and_energy", "housing_and_development", "health",
    "politics_and_public_life", "culture_and_recreation", "society_and_demography", "open_data_tools",
)  # fmt: skip
REUSE_DOMAINS = ("carto-citoyenne.fr", "lepetitregional.fr", "data-explorer.fr", "observatoire-local.org")
REUSER_ORGANIZATIONS = (
    "Association Données Citoyennes",
    "Le Petit Régional",
    "Mobilités Douces SAS",
    "Laboratoire d'économie territoriale",
)


def slugify(text: str) -> str:
    """A URL slug: accents dropped, lower case, words joined by dashes."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _iso(when: dt.datetime) -> str:
    return when.isoformat(timespec="microseconds")


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _user_ref(user: dict) -> dict:
    """A member's user object as a reference (discussions and reuses carry no email or last login)."""
    return {key: value for key, value in user.items() if key not in ("email", "last_login_at")}


def _reuser_organization(name: str) -> dict:
    """A stable organization reference for a reuse publisher (ids derived from the name)."""
    slug = slugify(name)
    return {
        "acronym": None,
        "badges": [],
        "class": "Organization",
        "id": hashlib.sha1(name.encode()).hexdigest()[:24],
        "logo": None,
        "logo_thumbnail": None,
        "name": name,
        "page": f"{PORTAL}/fr/organizations/{slug}/",
        "slug": slug,
        "uri": f"{PORTAL}/api/1/organizations/{slug}/",
    }


def _count(rng: random.Random, mean: float) -> int:
    """A non-negative count around `mean` (Poisson-like, cheap)."""
    if mean <= 0:
        return 0
    if mean < 5:
        return sum(1 for _ in range(10) if rng.random() < mean / 10)
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))


class _Factory:
    """Builds fixture-shaped objects; `now` bounds every generated date."""

    def __init__(self, rng: random.Random, now: dt.datetime, public_users: Iterable[dict] = ()) -> None:
        self.rng = rng
        self.now = now
        self.public_users = list(public_users)
        self.slugs: dict[str, set[str]] = {}

    def object_id(self, when: dt.datetime) -> str:
        return f"{int(when.timestamp()):08x}{self.rng.getrandbits(64):016x}"

    def moment(self, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        if end <= start:
            return start
        return start + dt.timedelta(seconds=self.rng.uniform(0, (end - start).total_seconds()))

    def unique_slug(self, kind: str, text: str) -> str:
        taken = self.slugs.setdefault(kind, set())
        base = slug = slugify(text)
        number = 1
        while slug in taken:
            number += 1
            slug = f"{base}-{number}"
        taken.add(slug)
        return slug

    def user(self, *, member: bool = False) -> dict:
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        slug = self.unique_slug("user", f"{first} {last}")
        user = {
            "avatar": None,
            "avatar_thumbnail": None,
            "class": "User",
            "first_name": first,
            "id": self.object_id(self.moment(FIRST_USER_DATE, min(self.now, FIRST_DATASET_DATE))),
            "last_name": last,
            "page": f"{PORTAL}/fr/users/{slug}/",
            "slug": slug,
            "uri": f"{PORTAL}/api/1/users/{slug}/",
        }
        if member:
            user |= {"email": None, "last_login_at": None}
        return user

    def public_user(self, *, besides: str | None = None) -> dict:
        """A portal user who is no producer: often one seen before, else a new one."""
        known = [user for user in self.public_users if user["id"] != besides]
        if known and self.rng.random() < 0.6:
            return self.rng.choice(known)
        user = self.user()
        self.public_users.append(user)
        return user

    def organization(self, index: int) -> dict:
        pattern, acronym = ORGANIZATION_PATTERNS[index % len(ORGANIZATION_PATTERNS)]
        place = PLACES[index % len(PLACES)]
        name = pattern.format(place=place)
        cycle = index // math.lcm(len(ORGANIZATION_PATTERNS), len(PLACES))
        if cycle:
            name = f"{name} – secteur {cycle + 1}"
        created = self.moment(dt.datetime(2013, 6, 1, tzinfo=dt.UTC), dt.datetime(2015, 12, 31, tzinfo=dt.UTC))
        members = [
            {
                "role": "admin" if position == 0 or self.rng.random() < 0.2 else "editor",
                "since": _iso(self.moment(created, self.now)),
                "user": self.user(member=True),
            }
            for position in range(self.rng.randint(2, 5))
        ]
        badges = [{"kind": "public-service"}] + ([{"kind": "certified"}] if self.rng.random() < 0.5 else [])
        return {
            "acronym": acronym,
            "badges": badges,
            "business_number_id": f"2{self.rng.randrange(10**13):013d}",
            "created_at": _iso(created),
            "deleted": None,
            "description": f"{name} publie ses données en open data : budget, équipements, services publics.",
            "extras": {},
            "id": self.object_id(created),
            "last_modified": _iso(self.moment(created, self.now)),
            "logo": f"{STATIC}/avatars/{self.rng.getrandbits(128):032x}-original.png",
            "members": members,
            "metrics": {
                "dataservices": 0,
                "datasets": 0,
                "followers": self.rng.randint(0, 80),
                "members": len(members),
                "reuses": 0,
                "views": 0,
            },
            "name": name,
            "slug": self.unique_slug("organization", name),
            "url": f"https://www.{slugify(place)}.fr",
        }

    def resource(self, dataset_slug: str, dataset_created: dt.datetime, fmt: str, position: int) -> dict:
        created = self.moment(dataset_created, min(self.now, dataset_created + dt.timedelta(days=30)))
        modified = self.moment(created, self.now)
        resource_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        filename = f"{dataset_slug[:60]}{f'-{position + 1}' if position else ''}.{fmt}"
        filesize = int(10 ** self.rng.uniform(3, 7.5))
        mime = FORMATS[fmt]
        return {
            "checksum": {"type": "sha1", "value": f"{self.rng.getrandbits(160):040x}"},
            "created_at": _iso(created),
            "description": f"Données au format {fmt.upper()}.",
            "extras": {
                "analysis:content-length": filesize,
                "analysis:mime-type": mime,
                "check:available": True,
                "check:date": _iso(self.moment(modified, self.now)),
                "check:headers:content-type": mime,
                "check:status": 200,
            },
            "filesize": filesize,
            "filetype": "file",
            "format": fmt,
            "harvest": None,
            "id": resource_id,
            "internal": {"created_at_internal": _iso(created), "last_modified_internal": _iso(modified)},
            "last_modified": _iso(modified),
            "latest": f"{PORTAL}/fr/datasets/r/{resource_id}",
            "metrics": {"views": 0},
            "mime": mime,
            "preview_url": None,
            "schema": {"name": None, "url": None, "version": None},
            "title": filename,
            "type": "main",
            "url": f"{STATIC}/resources/{dataset_slug}/{created:%Y%m%d-%H%M%S}/{filename}",
        }

    def entry(self, organization: dict, title: str, tags: tuple[str, ...], place: str) -> dict:
        """A world entry: dataset with 1-4 resources, no reuse or discussion yet, zero metrics."""
        created = self.moment(FIRST_DATASET_DATE, self.now - dt.timedelta(days=20))
        slug = self.unique_slug("dataset", title)
        count = self.rng.choices((1, 2, 3, 4), (4, 3, 2, 1))[0]
        formats = self.rng.choices(list(FORMATS), weights=(5, 2, 2, 1), k=count)
        frequency = self.rng.choice(FREQUENCIES)
        year = self.moment(created, self.now).year
        dataset = {
            "acronym": None,
            "archived": None,
            "contact_points": [],
            "created_at_internal": _iso(created),
            "deleted": None,
            "description": f"{title}.\n\nJeu de données publié par {organization['name']} et mis à jour "
            f"selon la fréquence indiquée. Les fichiers sont encodés en UTF-8.",
            "extras": {},
            "frequency": frequency,
            "frequency_date": None
            if frequency in ("punctual", "irregular", "unknown")
            else _iso(self.moment(self.now, self.now + dt.timedelta(days=365))),
            "harvest": None,
            "id": self.object_id(created),
            "last_modified_internal": _iso(self.moment(created, self.now)),
            "license": self.rng.choice(LICENSES),
            "metrics": {"discussions": 0, "followers": 0, "resources_downloads": 0, "reuses": 0, "views": 0},
            "owner": None,
            "private": False,
            "schema": None,
            "slug": slug,
            "tags": sorted({*tags, slugify(place)}),
            "temporal_coverage": {"end": f"{year}-12-31", "start": f"{year}-01-01"}
            if self.rng.random() < 0.4
            else None,
            "title": title,
        }
        return {
            "dataset": dataset,
            "resources": [self.resource(slug, created, fmt, position) for position, fmt in enumerate(formats)],
            "reuses": [],
            "discussions": [],
            "organization_id": organization["id"],
        }

    def message(self, content: str, poster: dict, when: dt.datetime) -> dict:
        return {
            "content": content,
            "posted_by": _user_ref(poster),
            "posted_on": _iso(when),
            "spam": {"status": "not_checked"},
        }

    def discussion(self, created: dt.datetime) -> dict:
        """An open discussion: a user's question about the data."""
        author = self.public_user()
        title, content = self.rng.choice(QUESTIONS)
        values = {"year": created.year - self.rng.randint(1, 3), "column": self.rng.choice(COLUMNS)}
        return {
            "closed": None,
            "closed_by": None,
            "created": _iso(created),
            "discussion": [self.message(content.format(**values), author, created)],
            "extras": {},
            "id": self.object_id(created),
            "spam": {"status": "not_checked"},
            "title": title.format(**values),
            "user": _user_ref(author),
        }

    def reuse(self, dataset: dict, publisher: str, created: dt.datetime) -> dict:
        """A reuse of `dataset` (titles read "<theme> - <place>"; else `publisher` stands for the place)."""
        reuse_type = self.rng.choices(REUSE_TYPES, REUSE_TYPE_WEIGHTS)[0]
        subject, _, place = dataset["title"].partition(" - ")
        subject, place = subject[0].lower() + subject[1:], place or publisher
        title = self.rng.choice(REUSE_TITLES[reuse_type]).format(subject=subject, place=place)
        slug = self.unique_slug("reuse", title)
        by_organization = self.rng.random() < 0.5
        return {
            "archived": None,
            "badges": [],
            "created_at": _iso(created),
            "deleted": None,
            "description": f"{title}, réalisé à partir des données ouvertes de {place}.",
            "extras": {},
            "featured": False,
            "id": self.object_id(created),
            "image": f"{STATIC}/images/{self.rng.getrandbits(128):032x}.png",
            "last_modified": _iso(self.moment(created, self.now)),
            "metrics": {
                "datasets": 1,
                "discussions": 0,
                "followers": self.rng.randint(0, 6),
                "views": int(self.rng.lognormvariate(5, 1.2)),
            },
            "organization": _reuser_organization(self.rng.choice(REUSER_ORGANIZATIONS)) if by_organization else None,
            "owner": None if by_organization else _user_ref(self.public_user()),
            "private": False,
            "slug": slug,
            "tags": list(dataset["tags"][:3]),
            "title": title,
            "topic": self.rng.choice(REUSE_TOPICS),
            "type": reuse_type,
            "url": f"https://{self.rng.choice(REUSE_DOMAINS)}/{slug}",
        }


@dataclass(frozen=True)
class Mix:
    """How much activity a generated world has. ``None`` shares follow each dataset's popularity (the demo)."""

    discussion_share: float | None = None
    discussions_per_dataset: tuple[int, int] = (1, 8)
    reuse_share: float | None = None
    reuses_per_dataset: tuple[int, int] = (1, 4)
    metrics_months: int = METRICS_MONTHS


# The benchmark's world: discussions on ~75% of datasets (1-3 each), reuses on ~65% (1-2 each), 3 months of metrics.
BENCHMARK_MIX = Mix(0.8, (1, 3), 0.65, (1, 2), 3)


def _close(discussion: dict, by: dict, when: dt.datetime) -> None:
    discussion["closed"] = _iso(when)
    discussion["closed_by"] = _user_ref(by)


def _add_discussions(factory: _Factory, entry: dict, members: list[dict], counts: tuple[int, int]) -> None:
    """A few discussions (``counts``: at least, at most): answered by a member (some closed), by another user only,
    or unanswered."""
    rng, now = factory.rng, factory.now
    dataset_created = _parse(entry["dataset"]["created_at_internal"])
    low, high = counts
    for _ in range(min(high, low + int(rng.expovariate(0.7)))):
        created = factory.moment(dataset_created + dt.timedelta(days=1), now - dt.timedelta(hours=1))
        discussion = factory.discussion(created)
        author = discussion["user"]
        answered_at = created + dt.timedelta(hours=math.exp(rng.uniform(0, math.log(600))))
        outcome = rng.random()
        if answered_at < now and outcome < 0.45:
            member = rng.choice(members)["user"]
            discussion["discussion"].append(factory.message(rng.choice(PRODUCER_ANSWERS), member, answered_at))
            if rng.random() < 0.2 and answered_at + dt.timedelta(days=1) < now:
                discussion["discussion"].append(factory.message(THANKS, author, answered_at + dt.timedelta(days=1)))
            if rng.random() < 0.5 and answered_at + dt.timedelta(days=2) < now:
                _close(discussion, member, answered_at + dt.timedelta(days=2))
        elif answered_at < now and outcome < 0.65:
            helper = factory.public_user(besides=author["id"])
            discussion["discussion"].append(factory.message(rng.choice(COMMUNITY_ANSWERS), helper, answered_at))
        elif rng.random() < 0.1 and answered_at < now:
            _close(discussion, author, answered_at)
        entry["discussions"].append(discussion)
    entry["discussions"].sort(key=lambda discussion: discussion["created"], reverse=True)


def _add_usage(
    factory: _Factory, world: World, today: dt.date, popularity: dict[str, float], months_kept: int
) -> list[dict]:
    """Monthly metrics rows (the last ``months_kept`` months, current one partial) and the cumulative counters."""
    rng = factory.rng
    current = month_index(today)
    elapsed = (today.day - 1) / calendar.monthrange(today.year, today.month)[1]
    organization_ids = sorted(world.organizations)
    rows: list[dict] = []
    for dataset_id, entry in world.entries.items():
        created = _parse(entry["dataset"]["created_at_internal"])
        first = max(current - months_kept + 1, month_index(created))
        months = [month for month in range(first, current + 1) if month < current or elapsed > 0]
        organization_id = entry["organization_id"]
        former, moved = "", -1  # some datasets moved from another organization: 2 rows that month
        if len(months) > 2 and rng.random() < 0.06:
            others = [other for other in organization_ids if other != organization_id]
            former = rng.choice(others) if others else factory.object_id(created)
            moved = rng.choice(months[1:])
        base, ratio = popularity[dataset_id], rng.uniform(0.15, 1.2)
        visits_total = downloads_total = 0
        for position, month in enumerate(months):
            season = {8: 0.7, 12: 0.85}.get(month % 12 + 1, 1.0)
            scale = season * (0.6 + 0.4 * (position + 1) / len(months)) * (elapsed if month == current else 1)
            visits = int(base * scale * rng.uniform(0.6, 1.4))
            downloads = int(visits * ratio * rng.uniform(0.7, 1.3))
            visit_value = None if visits == 0 or rng.random() < 0.02 else visits
            download_value = None if downloads == 0 or rng.random() < 0.04 else downloads
            if not visits and not downloads:
                continue  # no row for a month without any hit
            visits_total += visit_value or 0
            downloads_total += download_value or 0
            shares = [(organization_id, 1.0)]
            if month < moved:
                shares = [(former, 1.0)]
            elif month == moved:
                split = rng.uniform(0.2, 0.8)
                shares = [(former, split), (organization_id, 1 - split)]
            for owner, share in shares:
                rows.append(
                    {
                        "dataset_id": dataset_id,
                        "organization_id": owner,
                        "metric_month": month_key_of_index(month),
                        "monthly_visit": None if visit_value is None else round(visit_value * share),
                        "monthly_download_resource": None if download_value is None else round(download_value * share),
                    }
                )
        before = max(0, first - month_index(created))
        history = int(base * 0.5 * before * rng.uniform(0.5, 1.0))
        metrics = entry["dataset"]["metrics"]
        metrics["views"] = visits_total + history
        metrics["resources_downloads"] = downloads_total + int(history * ratio)
        metrics["followers"] = int(rng.expovariate(1 / (1 + base / 30)))
        weights = [rng.random() ** 2 + 0.01 for _ in entry["resources"]]
        for resource, weight in zip(entry["resources"], weights, strict=True):
            resource["metrics"]["views"] = int(metrics["resources_downloads"] * weight / sum(weights))
        entry["resources"][0]["metrics"]["views"] += metrics["resources_downloads"] - sum(
            resource["metrics"]["views"] for resource in entry["resources"]
        )
    rows.sort(key=lambda row: (row["metric_month"], row["dataset_id"], row["organization_id"]))
    return [{"__id": number, **row} for number, row in enumerate(rows, start=1)]


def generate_world(
    n_organizations: int = 2,
    datasets_per_organization: int = 6,
    *,
    seed: int = 0,
    today: dt.date,
    mix: Mix = Mix(),
) -> World:
    """A plausible, deterministic (per seed) French public-sector portal as of the morning of `today`.

    With the default `mix`, about a quarter of the datasets have discussions and about a fifth have reuses, the
    most visited ones more often; every counter in `metrics` matches the generated objects. Each entry stores
    its publisher under ``organization_id``.
    """
    rng = random.Random(seed)
    factory = _Factory(rng, dt.datetime.combine(today, dt.time(), dt.UTC))
    world = World(organizations={}, entries={}, today=today)
    popularity: dict[str, float] = {}
    for index in range(n_organizations):
        organization = factory.organization(index)
        world.organizations[organization["id"]] = organization
        place = PLACES[index % len(PLACES)]
        themes = rng.sample(THEMES, len(THEMES))
        for number in range(datasets_per_organization):
            theme, tags = themes[number % len(themes)]
            cycle = number // len(themes)
            suffix = "" if not cycle else f" {today.year - cycle}" if cycle < 15 else f" (lot {cycle})"
            entry = factory.entry(organization, f"{theme}{suffix} - {place}", tags, place)
            world.entries[entry["dataset"]["id"]] = entry
            popularity[entry["dataset"]["id"]] = rng.lognormvariate(3.8, 1.3)  # monthly visits
    by_organization: dict[str, list[str]] = {}
    for dataset_id, entry in world.entries.items():
        by_organization.setdefault(entry["organization_id"], []).append(dataset_id)
    for dataset_id, entry in world.entries.items():
        buzz = min(1.0, popularity[dataset_id] / 150)
        discussed = mix.discussion_share if mix.discussion_share is not None else 0.18 + 0.3 * buzz
        if rng.random() < discussed:
            _add_discussions(factory, entry, world.organization_of(dataset_id)["members"], mix.discussions_per_dataset)
        reused = mix.reuse_share if mix.reuse_share is not None else 0.14 + 0.3 * buzz
        if rng.random() < reused:
            publisher = world.organization_of(dataset_id)["name"]
            dataset_created = _parse(entry["dataset"]["created_at_internal"])
            low, high = mix.reuses_per_dataset
            for _ in range(min(high, max(low, rng.choice((1, 1, 1, 2, 2, 3, 4))))):
                created = factory.moment(dataset_created + dt.timedelta(days=7), factory.now - dt.timedelta(days=1))
                reuse = factory.reuse(entry["dataset"], publisher, created)
                entry["reuses"].append(reuse)
                siblings = [other for other in by_organization[entry["organization_id"]] if other != dataset_id]
                if siblings and rng.random() < 0.15:
                    world.entries[rng.choice(siblings)]["reuses"].append(reuse)
                    reuse["metrics"]["datasets"] = 2
    world.metrics_rows = _add_usage(factory, world, today, popularity, mix.metrics_months)
    for entry in world.entries.values():
        entry["dataset"]["metrics"]["discussions"] = len(entry["discussions"])
        entry["dataset"]["metrics"]["reuses"] = len(entry["reuses"])
    for organization_id, dataset_ids in by_organization.items():
        metrics = world.organizations[organization_id]["metrics"]
        metrics["datasets"] = len(dataset_ids)
        metrics["views"] = sum(world.entries[dataset_id]["dataset"]["metrics"]["views"] for dataset_id in dataset_ids)
    return world


def _spread(rng: random.Random, resources: list[dict], downloads: int) -> None:
    """Share a day's downloads among resources, in proportion to their downloads so far."""
    weights = [resource["metrics"].get("views", 0) + 1 for resource in resources]
    shares = [downloads * weight // sum(weights) for weight in weights]
    shares[rng.randrange(len(shares))] += downloads - sum(shares)
    for resource, share in zip(resources, shares, strict=True):
        resource["metrics"]["views"] = resource["metrics"].get("views", 0) + share


def _factory_for(world: World, rng: random.Random, now: dt.datetime) -> _Factory:
    """A factory that knows the world's discussion authors and taken slugs, for activity until ``now``."""
    entries = world.entries.values()
    authors = {
        discussion["user"]["id"]: discussion["user"]
        for entry in entries
        for discussion in entry["discussions"]
        if discussion.get("user")
    }
    factory = _Factory(rng, now, authors.values())
    factory.slugs = {
        "reuse": {reuse["slug"] for entry in entries for reuse in entry["reuses"]},
        "user": {user["slug"] for user in authors.values()}
        | {member["user"]["slug"] for org in world.organizations.values() for member in org.get("members", [])},
    }
    return factory


def advance_day(world: World, *, seed: int) -> None:
    """Play one day of activity, the day `world.today` (today's date if unset), then move to the next day.

    Visits and downloads grow, in the counters and in that month's metrics rows; now and then a
    discussion opens, a producer answers (and maybe closes) one, or a reuse appears. Counters are
    incremented, so `resources_downloads` stays the sum of the resources' `metrics.views` when it was.
    """
    with world.lock:
        day = world.today or dt.date.today()
        rng = random.Random(f"{seed}:{day.isoformat()}")
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        end = start + dt.timedelta(days=1)
        entries = [(dataset_id, world.entries[dataset_id]) for dataset_id in sorted(world.entries)]
        reuses = {reuse["id"]: reuse for _, entry in entries for reuse in entry["reuses"]}
        factory = _factory_for(world, rng, end)
        month = f"{day:%Y-%m}"
        rows = {
            (row["dataset_id"], row["organization_id"]): row
            for row in world.metrics_rows
            if row["metric_month"] == month
        }
        next_row_id = max((row["__id"] for row in world.metrics_rows), default=0) + 1
        for dataset_id, entry in entries:
            if dataset_id in world.deleted:
                continue
            dataset, metrics = entry["dataset"], entry["dataset"]["metrics"]
            created = _parse(dataset.get("created_at_internal") or dataset["created_at"])
            daily = metrics.get("views", 0) / max(1.0, (end - created).total_seconds() / 86400)
            ratio = min(2.0, metrics.get("resources_downloads", 0) / max(1, metrics.get("views", 0)))
            visits = _count(rng, daily)
            downloads = _count(rng, daily * ratio) if entry["resources"] else 0
            metrics["views"] = metrics.get("views", 0) + visits
            if downloads:
                _spread(rng, entry["resources"], downloads)
                metrics["resources_downloads"] = metrics.get("resources_downloads", 0) + downloads
            organization = world.organization_of(dataset_id)
            if "views" in organization.get("metrics", {}):
                organization["metrics"]["views"] += visits
            if visits or downloads:
                key = (dataset_id, entry["organization_id"])
                if key not in rows:
                    rows[key] = {
                        "__id": next_row_id,
                        "dataset_id": dataset_id,
                        "organization_id": key[1],
                        "metric_month": month,
                        "monthly_visit": None,
                        "monthly_download_resource": None,
                    }
                    world.metrics_rows.append(rows[key])
                    next_row_id += 1
                row = rows[key]
                if visits:
                    row["monthly_visit"] = (row["monthly_visit"] or 0) + visits
                if downloads:
                    row["monthly_download_resource"] = (row["monthly_download_resource"] or 0) + downloads

            members = [member["user"] for member in organization.get("members", [])]
            member_ids = {member["id"] for member in members}
            for discussion in entry["discussions"] if members else []:
                if discussion.get("closed") or rng.random() >= 0.12:
                    continue
                if any(message["posted_by"]["id"] in member_ids for message in discussion["discussion"]):
                    continue
                last = _parse(discussion["discussion"][-1]["posted_on"])
                answered_at = factory.moment(max(start, last), end)
                member = rng.choice(members)
                discussion["discussion"].append(factory.message(rng.choice(PRODUCER_ANSWERS), member, answered_at))
                if rng.random() < 0.4:
                    _close(discussion, member, answered_at)
            if rng.random() < min(0.15, 0.01 + daily / 400):
                entry["discussions"].insert(0, factory.discussion(factory.moment(start, end)))
                metrics["discussions"] = metrics.get("discussions", 0) + 1
            if rng.random() < min(0.05, 0.002 + daily / 2000):
                reuse = factory.reuse(dataset, organization["name"], factory.moment(start, end))
                entry["reuses"].append(reuse)
                reuses[reuse["id"]] = reuse
                metrics["reuses"] = metrics.get("reuses", 0) + 1
        for reuse in reuses.values():
            reuse["metrics"]["views"] = reuse["metrics"].get("views", 0) + _count(rng, 1.5)
        world.today = day + dt.timedelta(days=1)


def add_news(world: World, *, seed: int) -> tuple[str, str]:
    """Early on the world's current day: a new reuse on the most viewed dataset, a new question on the next one.

    Returns the ids of the reuse and of the discussion. Their timestamps are never after the present moment.
    """
    with world.lock:
        day = world.today or dt.date.today()
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        now = min(start + dt.timedelta(hours=1), dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        factory = _factory_for(world, random.Random(f"news:{seed}:{day.isoformat()}"), now)
        live = [key for key in world.entries if key not in world.deleted]
        popular = sorted(live, key=lambda key: -world.entries[key]["dataset"]["metrics"].get("views", 0))
        reused, questioned = world.entries[popular[0]], world.entries[popular[min(1, len(popular) - 1)]]
        reuse = factory.reuse(reused["dataset"], world.organization_of(popular[0])["name"], factory.moment(start, now))
        reused["reuses"].append(reuse)
        reused["dataset"]["metrics"]["reuses"] = reused["dataset"]["metrics"].get("reuses", 0) + 1
        discussion = factory.discussion(factory.moment(start, now))
        questioned["discussions"].insert(0, discussion)
        questioned["dataset"]["metrics"]["discussions"] = questioned["dataset"]["metrics"].get("discussions", 0) + 1
        return reuse["id"], discussion["id"]
