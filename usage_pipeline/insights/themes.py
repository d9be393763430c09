"""What a reuser's discussion on a dataset is about: an offline, explainable theme classifier.

Themes (``THEMES``):

* ``accessibility``: the reuser cannot get to the data (dead link, 404, missing resource, download or API failing);
* ``freshness``: the data is not up to date (next update, updates stopped, a recent period missing);
* ``reliability``: the values are wrong or doubtful (errors, inconsistencies, duplicates, missing records);
* ``usability``: the reuser has the data but struggles to use it (format, encoding, separators, columns, codes,
  documentation);
* ``other``: thanks, requests for new data, licensing, personal data, off-topic; also the fallback.

Method: weighted lexicon scoring, so that every verdict can be explained by the terms that produced it.

1. Text is split into word tokens (apostrophes and hyphens split words: ``d'accéder`` gives ``d`` + ``accéder``).
   Each token is case- and accent-folded (``Téléchargé`` -> ``telecharge``) then reduced to its Snowball French
   stem (``téléchargements`` and ``télécharger`` -> ``telecharg``), which absorbs inflections. ``snowballstemmer``
   runs the C build of the same algorithms (PyStemmer) when it is installed, as it is with this project.
2. A folded token of ``FUZZY_MIN_LENGTH`` letters or more that matches no lexicon stem is compared with the
   lexicon's words and stems sharing its first letter with ``rapidfuzz`` (optimal string alignment distance: one
   edit or transposition, two from ``FUZZY_LONG_WORD`` letters): ``telechargment`` still counts as
   ``téléchargement``. Shorter words are left alone, having too many real neighbours (``masque`` is no typo of
   ``manque``). Token analysis is cached, so a known word costs a dictionary look-up.
3. ``LEXICON`` maps each theme to terms and weights. A term is one word or a phrase, whose words must follow each
   other (``mise à jour``), or may have up to ``MAX_GAP`` words between them where written with `` ~ ``
   (``lien ~ mort`` matches "le lien semble mort"). Tokens ``<year>`` (1990-2039) and ``<date>`` (a year, a month
   name or a day/month date such as ``30/11``) stand for any such word. Where matches overlap, the longest term wins
   (``erreur 404`` is an access problem, not a wrong value), so each word feeds at most one term.
4. Each part of the discussion is scored on its own: the title (weight ``TITLE_WEIGHT``), the opening message
   (``OPENING_WEIGHT``) and each later message (``LATER_WEIGHT``): the label follows what the reuser opens with.
   Within a part, a term counts once however often it is repeated. A theme's score is the sum over parts of the
   part weight times the weights of the distinct terms found.
5. ``other`` starts at ``OTHER_PRIOR`` plus its own terms (licence, personal data, thanks, new-data requests...).
   The highest score wins; ties go to the earlier theme in ``THEMES``. A discussion with no clue is ``other``.

Negation is not inverted on purpose: in complaints it is part of the signal ("pas de mise à jour depuis mars",
"le lien ne fonctionne pas"), so the phrases that carry it are lexicon terms of their own.

``evidence`` lists the winning theme's matched terms as they appear in the text, strongest contribution first.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer
from rapidfuzz import process
from rapidfuzz.distance import OSA

THEMES = ("accessibility", "freshness", "reliability", "usability", "other")

TITLE_WEIGHT = 2.0
OPENING_WEIGHT = 1.0
LATER_WEIGHT = 0.5
OTHER_PRIOR = 1.5
MAX_GAP = 3
FUZZY_MIN_LENGTH = 8
FUZZY_LONG_WORD = 12

# Terms per theme with their weights: 3 = decisive on its own, 2 = strong, 1 = a hint, 0.5 = weak.
# Written in plain French with accents (folded at load time); " ~ " allows up to MAX_GAP words in between.
LEXICON: dict[str, dict[str, float]] = {
    "accessibility": {
        "lien ~ mort": 3,
        "lien ~ cassé": 3,
        "lien brisé": 3,
        "lien invalide": 3,
        "lien ~ fonctionne pas": 3,
        "lien ~ fonctionne plus": 3,
        "lien ~ marche pas": 3,
        "lien ~ marche plus": 3,
        "lien ~ inaccessible": 3,
        "404": 3,
        "erreur 404": 3,
        "404 error": 3,
        "erreur 403": 3,
        "page d'erreur": 2,
        "403": 2,
        "502": 3,
        "503": 3,
        "erreur 500": 3,
        "erreur serveur": 3,
        "bad gateway": 3,
        "not found": 3,
        "page introuvable": 3,
        "fichier introuvable": 3,
        "ressource introuvable": 3,
        "introuvable": 1.5,
        "inaccessible": 2.5,
        "accès refusé": 3,
        "access denied": 3,
        "forbidden": 2,
        "impossible d'accéder": 3,
        "impossible ~ accéder": 2,
        "impossible ~ télécharger": 3,
        "impossible ~ ouvrir le lien": 3,
        "problème de téléchargement": 3,
        "téléchargement ~ échoue": 3,
        "erreur ~ téléchargement": 3,
        "téléchargement ~ erreur": 3,
        "échec ~ téléchargement": 3,
        "api ~ indisponible": 3,
        "indisponible": 1.5,
        "téléchargement": 1,
        "délai d'attente": 3,
        "timeout": 3,
        "time out": 3,
        "serveur": 1.5,
        "ne répond pas": 1.5,
        "ressource manquante": 2.5,
        "fichier manquant": 2,
        "ressource ~ disparu": 2.5,
        "fichier ~ disparu": 2.5,
        "n'est plus disponible": 2,
        "n'existe plus": 2,
        "erreur interne": 2.5,
        "internal server error": 3,
        "plus accessible": 2,
        "lien ~ obsolète": 3,
        "redirection": 1.5,
        "ne se télécharge pas": 3,
        "téléchargement ~ impossible": 3,
        "ne fonctionne pas": 1,
        "ne fonctionne plus": 1,
        "api ~ erreur": 2,
        "lien": 0.5,
        "url": 0.5,
        "accéder": 1,
        "broken link": 3,
        "dead link": 3,
        "cannot download": 3,
        "download": 1,
    },
    "freshness": {
        "mise à jour": 2,
        "mettre à jour": 1.5,
        "à jour": 1.5,
        "pas à jour": 2.5,
        "plus à jour": 2.5,
        "maj": 2,
        "actualisation": 2,
        "rafraîchissement": 2,
        "fréquence": 1.5,
        "périodicité": 2,
        "prochaine": 1.5,
        "prochain millésime": 2,
        "millésime": 1,
        "obsolète": 2.5,
        "périmé": 2,
        "retard": 1.5,
        "depuis le <date>": 1.5,
        "depuis <date>": 1.5,
        "depuis ~ mois": 1,
        "depuis ~ semaines": 1,
        "il manque ~ <date>": 2.5,
        "<date> ~ manquant": 2.5,
        "toujours rien": 2,
        "plus aucune donnée": 2.5,
        "plus de données": 1.5,
        "à quand": 2,
        "quand ~ disponible": 2,
        "quand ~ publié": 2,
        "quand ~ mise à disposition": 2,
        "quand ~ données": 1,
        "données <year>": 1,
        "données de <year>": 1,
        "<year> ~ disponible": 2,
        "mensuel": 1,
        "trimestriel": 1,
        "annuel": 1,
        "calendrier": 1,
        "n'est plus alimenté": 2.5,
        "ne sont plus alimentées": 2.5,
        "figé": 1.5,
        "publication": 1,
        "publier": 1,
        "publié": 1,
        "date de publication": 2,
        "dernière publication": 2,
        "dernières données": 1.5,
        "récent": 1,
        "outdated": 2.5,
        "update": 2,
        "updated": 2,
        "up to date": 2,
        "next release": 2,
    },
    "reliability": {
        "erreur": 2,
        "erroné": 3,
        "incorrect": 2.5,
        "faux": 2,
        "fausse": 2,
        "inexact": 2.5,
        "aberrant": 3,
        "anormalement": 2.5,
        "incohérent": 3,
        "cohérence": 1.5,
        "doublon": 3,
        "dupliqué": 2.5,
        "en double": 2.5,
        "différence": 1.5,
        "divergence": 2,
        "écart": 1.5,
        "manque": 1.5,
        "il manque": 2,
        "données manquantes": 2,
        "absent": 2,
        "absence": 2,
        "ne trouve pas": 1,
        "n'apparaît pas": 2,
        "n'apparaissent pas": 2,
        "pas présent": 2,
        "n'existe pas": 1.5,
        "bizarre": 2,
        "étrange": 2,
        "corriger": 2,
        "correction": 2,
        "rectifier": 2.5,
        "rectification": 2.5,
        "vérifier": 1,
        "faute": 2,
        "orthographe": 2,
        "vide": 1.5,
        "non renseigné": 2,
        "champs vides": 2.5,
        "valeurs vides": 2.5,
        "cellules vides": 2.5,
        "est-ce normal": 2.5,
        "pas renseigné": 2,
        "non conforme": 2,
        "incomplet": 2.5,
        "somme": 1,
        "souci": 1,
        "zéro": 1,
        "valeur": 0.5,
        "réalité": 1.5,
        "homogénéité": 1.5,
        "harmoniser": 1.5,
        "contradiction": 2.5,
        "invraisemblable": 2.5,
        "suspect": 2,
        "douteux": 2.5,
        "fiabilité": 2,
        "fiable": 1.5,
        "exactitude": 2,
        "mauvais": 1.5,
        "mal géolocalisé": 2.5,
        "mal placé": 2,
        "mal positionné": 2,
        "devrait être": 1,
        "ne correspond pas": 2,
        "ne correspondent pas": 2,
        "pas les mêmes": 1.5,
        "ne reconnaît pas": 1.5,
        "ne comprends pas pourquoi": 2,
        "wrong": 2.5,
        "error": 2,
        "inconsistent": 2.5,
        "duplicate": 2.5,
        "missing": 1.5,
    },
    "usability": {
        "format": 2,
        "encodage": 3,
        "encoding": 3,
        "utf": 2.5,
        "caractères": 1.5,
        "séparateur": 3,
        "délimiteur": 3,
        "virgule": 1.5,
        "point-virgule": 2,
        "colonne": 1.5,
        "champ": 1.5,
        "variable": 1.5,
        "attribut": 1.5,
        "signification": 3,
        "que veut dire": 3,
        "à quoi correspond": 3,
        "correspondent": 1.5,
        "définition": 2.5,
        "documentation": 2.5,
        "dictionnaire": 2.5,
        "nomenclature": 2.5,
        "code": 0.5,
        "codification": 2,
        "libellé": 1,
        "comprendre": 1.5,
        "ne comprends pas": 2,
        "comment": 0.5,
        "comment faire": 2,
        "comment fait-on": 2,
        "comment procéder": 2,
        "précision": 1.5,
        "méthode": 1.5,
        "procédure": 1.5,
        "mode opératoire": 2.5,
        "exploiter": 1.5,
        "importer": 2,
        "illisible": 2.5,
        "lisibilité": 2,
        "ouvrir": 1.5,
        "excel": 2,
        "csv": 1,
        "sql": 1,
        "json": 1,
        "exporter": 1.5,
        "extraire": 1.5,
        "jointure": 2,
        "paramètre": 1.5,
        "filtrer": 1.5,
        "requête": 1,
        "joindre": 1.5,
        "autre format": 2.5,
        "identifiant": 1,
        "calculer": 1.5,
        "version": 1,
        "schéma": 1.5,
        "notice": 2,
        "différence entre": 2,
        "type de données": 1.5,
        "unité": 1.5,
        "légende": 1.5,
        "explication": 1.5,
        "tutoriel": 2,
        "projection": 1.5,
        "shapefile": 1.5,
        "geojson": 1.5,
        "xlsx": 1.5,
        "parquet": 1.5,
        "zip": 1,
        "décompresser": 1.5,
        "croiser": 1.5,
        "relier": 1.5,
        "correspondance": 1.5,
        "table de passage": 2.5,
        "modalité": 1.5,
        "abréviation": 2,
        "interprétation": 2,
        "column": 1.5,
        "meaning": 2.5,
        "separator": 3,
    },
    "other": {
        "licence": 3,
        "license": 3,
        "droit d'auteur": 3,
        "juridique": 2,
        "cgu": 2,
        "rgpd": 3,
        "données personnelles": 3,
        "données à caractère personnel": 3,
        "vie privée": 3,
        "anonymisation": 2,
        "supprimer mes": 2.5,
        "bravo": 2,
        "félicitations": 2,
        "merci pour ce travail": 2,
        "possible d'avoir": 2,
        "possibilité d'avoir": 2,
        "emploi": 2,
        "réutilisation": 1.5,
        "j'ai développé": 2,
        "nous avons développé": 2,
        "application": 1,
        "package": 1.5,
        "suggestion": 1,
        "mot-clé": 2,
        "code d'accès": 2.5,
        "mot de passe": 2.5,
        "prévu ~ ajouter": 2.5,
        "envisagé": 1,
        "personal data": 3,
        "thank you": 1,
    },
}

# Phrases that look like clues but are not: they consume their words and score nothing.
NEUTRAL = (
    "sauf erreur",
    "comme expliqué",
    "merci d'avance",
    "merci par avance",
    "pas de problème",
    "code postal",
    "sans problème",
)

# A word, or a day/month date as one token ("30/11", "1/07/2024").
_TOKEN = re.compile(r"\d{1,2}/\d{1,2}(?:/\d{2,4})?|[^\W_]+")
_DAY_MONTH = re.compile(r"\d{1,2}/\d{1,2}(?:/\d{2,4})?")
_MONTH_NAMES = (
    "janvier fevrier mars avril mai juin juillet aout septembre octobre novembre decembre "
    "january february march april may june july august september october november december"
)
_MONTHS = frozenset(_MONTH_NAMES.split())
_STEMMER = snowballstemmer.stemmer("french")


@dataclass(frozen=True)
class ThemeVerdict:
    """A discussion's theme, the terms that decided it and every theme's score."""

    theme: str  # one of THEMES
    evidence: tuple[str, ...]  # the matched terms that decided it, as they appear in the text
    scores: dict[str, float]  # score per theme (other = fallback)


@dataclass(frozen=True)
class _Term:
    theme: str
    text: str
    keys: tuple[str, ...]
    gapped: bool
    weight: float


def _fold(word: str) -> str:
    """Lower case without accents or ligatures: ``Œuvre Été`` -> ``oeuvre ete``."""
    decomposed = unicodedata.normalize("NFKD", word.lower().replace("œ", "oe").replace("æ", "ae"))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _stem(folded: str) -> str:
    """Snowball stem of a folded word.

    Snowball's French rules expect accents: without them "erronées" stems to "errone", not "erron" like "erroné".
    A stem still ending in "e" is stemmed once more, which joins them.
    """
    stem = _STEMMER.stemWord(folded)
    return _STEMMER.stemWord(stem) if stem.endswith("e") else stem


def _word_keys(folded: str) -> frozenset[str]:
    """Keys a folded word matches exactly: its stem and, for numbers and months, ``<year>`` / ``<date>``."""
    if _DAY_MONTH.fullmatch(folded):
        return frozenset(("<date>",))
    keys = {_stem(folded)}
    if folded.isdigit() and len(folded) == 4 and 1990 <= int(folded) <= 2039:
        keys.update(("<date>", "<year>"))
    elif folded in _MONTHS:
        keys.add("<date>")
    return frozenset(keys)


def _compile(lexicon: dict[str, dict[str, float]]) -> tuple[dict[str, list[_Term]], dict[str, str]]:
    """Index the terms by their first key, and map every lexicon word and stem to its key (for fuzzy matching).

    Neutral phrases get the theme "" and weight 0.
    """
    by_first: dict[str, list[_Term]] = {}
    vocabulary: dict[str, str] = {}
    for theme, terms in [*lexicon.items(), ("", dict.fromkeys(NEUTRAL, 0.0))]:
        for text, weight in terms.items():
            gapped = " ~ " in text
            keys: list[str] = []
            for word in _TOKEN.findall(text.replace("<", "").replace(">", "")):
                folded = _fold(word)
                if f"<{folded}>" in text:
                    keys.append(f"<{folded}>")
                    continue
                stem = _stem(folded)
                keys.append(stem)
                if len(folded) >= FUZZY_MIN_LENGTH and not folded.isdigit():
                    vocabulary.setdefault(folded, stem)
                    vocabulary.setdefault(stem, stem)
            term = _Term(theme, text, tuple(keys), gapped, float(weight))
            by_first.setdefault(term.keys[0], []).append(term)
    return by_first, vocabulary


def _by_first_letter(words: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Typos seldom touch the first letter: fuzzy candidates are the lexicon words sharing it (a few dozen)."""
    groups: dict[str, list[str]] = {}
    for word in sorted(words):
        groups.setdefault(word[0], []).append(word)
    return {letter: tuple(group) for letter, group in groups.items()}


_TERMS_BY_FIRST_KEY, _VOCABULARY = _compile(LEXICON)
_KNOWN_KEYS = frozenset(key for terms in _TERMS_BY_FIRST_KEY.values() for term in terms for key in term.keys)
_FUZZY_CHOICES = _by_first_letter(list(_VOCABULARY))


@lru_cache(maxsize=65536)
def _token_keys(word: str) -> frozenset[str]:
    """Keys of one word as written: exact (folded stem, <date>...) or, failing that, the closest lexicon word's."""
    folded = _fold(word)
    keys = _word_keys(folded)
    if keys & _KNOWN_KEYS or len(folded) < FUZZY_MIN_LENGTH or folded.isdigit():
        return keys
    edits = 2 if len(folded) >= FUZZY_LONG_WORD else 1
    best = process.extractOne(folded, _FUZZY_CHOICES.get(folded[0], ()), scorer=OSA.distance, score_cutoff=edits)
    if best is None:
        return keys
    return keys | {_VOCABULARY[best[0]]}


def _glued_to_dot(text: str, start: int) -> bool:
    return start >= 2 and text[start - 1] == "." and text[start - 2].isalnum()


def _match_term(term: _Term, keys: Sequence[frozenset[str]], start: int) -> list[int] | None:
    """Token positions of ``term`` starting at ``start``, or None when it does not match there."""
    positions = [start]
    for key in term.keys[1:]:
        previous = positions[-1]
        limit = previous + 2 + (MAX_GAP if term.gapped else 0)
        following = next((i for i in range(previous + 1, min(limit, len(keys))) if key in keys[i]), None)
        if following is None:
            return None
        positions.append(following)
    return positions


def _matches(text: str) -> dict[_Term, str]:
    """Distinct terms found in ``text``, longest first where they overlap, with the words as written."""
    # A file extension or a domain part ("x.csv", "data.gouv.fr") is no clue: skip words glued to a dot.
    tokens = [token for token in _TOKEN.finditer(text) if not _glued_to_dot(text, token.start())]
    keys = [_token_keys(token.group()) for token in tokens]
    candidates: list[tuple[int, int, _Term, list[int]]] = []
    for start, token_keys in enumerate(keys):
        for key in token_keys:
            for term in _TERMS_BY_FIRST_KEY.get(key, ()):
                positions = _match_term(term, keys, start)
                if positions is not None:
                    candidates.append((-len(positions), start, term, positions))
    candidates.sort(key=lambda candidate: (candidate[0], candidate[1], -candidate[2].weight))
    used: set[int] = set()
    found: dict[_Term, str] = {}
    for _, _, term, positions in candidates:
        if used.intersection(positions):
            continue
        used.update(positions)
        found.setdefault(term, text[tokens[positions[0]].start() : tokens[positions[-1]].end()])
    return found


def classify(title: str, messages: Sequence[str]) -> ThemeVerdict:
    """Theme of one discussion.

    title: the discussion title; messages: the reusers' messages in thread order (opening message first;
    producer answers excluded).
    """
    parts = [(title, TITLE_WEIGHT)]
    parts += [(message, OPENING_WEIGHT if index == 0 else LATER_WEIGHT) for index, message in enumerate(messages)]
    scores = dict.fromkeys(THEMES, 0.0)
    scores["other"] = OTHER_PRIOR
    contributions: dict[str, dict[str, float]] = {theme: {} for theme in THEMES}
    for text, part_weight in parts:
        for term, written in _matches(text or "").items():
            if not term.theme:
                continue
            points = part_weight * term.weight
            scores[term.theme] += points
            evidence = contributions[term.theme]
            evidence[written] = evidence.get(written, 0.0) + points
    theme = max(THEMES, key=lambda name: scores[name])
    ranked = sorted(contributions[theme].items(), key=lambda item: -item[1])
    return ThemeVerdict(
        theme, tuple(written for written, _ in ranked), {name: round(scores[name], 3) for name in THEMES}
    )
