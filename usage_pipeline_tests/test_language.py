"""The producer's language: the catalogs, Babel's formats, the French digest and alerts, and alerts by e-mail."""

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from usage_pipeline.demo.mail_server import MailCatcher
from usage_pipeline.insights import language
from usage_pipeline.insights.alerts import Alert, DiscussionAlerts, discussion_alerts_email, format_message
from usage_pipeline.insights.digest import asset
from usage_pipeline.insights.digest.delivery import Mailer
from usage_pipeline.insights.language import reader
from usage_pipeline.settings import Settings, SettingsError
from usage_pipeline_tests.test_alerts import D1, D2, D3, SLA_DAYS, publish
from usage_pipeline_tests.test_digest import PARIS, REPORT_DATE, build_published_db

FR, EN = reader("fr"), reader("en")
NNBSP, NBSP = "\u202f", "\xa0"  # CLDR's French group separator, and the space before % and :


def _catalog(lang: str) -> Catalog:
    with language.catalog_path(lang).open("rb") as file:
        return read_po(file, locale=language.LOCALES[lang])


def test_every_message_shown_has_a_french_translation_with_the_same_placeholders() -> None:
    extracted = {message.id for message in language.extracted_messages() if message.id}
    catalog = _catalog("fr")
    translated = {message.id for message in catalog if message.id}
    assert extracted - translated == set(), "run `python -m usage_pipeline.insights.language` and translate"
    assert translated - extracted == set(), "obsolete messages: run `python -m usage_pipeline.insights.language`"
    untranslated = [message.id for message in catalog if message.id and not all(_strings(message.string))]
    assert untranslated == []
    # Babel's own checks: python-format placeholders of each translation match its message's.
    assert [(message.id, errors) for message, errors in catalog.check()] == []


def _strings(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else (value,)


def test_numbers_dates_and_months_in_the_readers_format() -> None:
    assert FR.number(1234) == f"1{NNBSP}234" and EN.number(1234) == "1,234"
    assert FR.number(2.75, 1) == "2,8" and EN.number(2.75, 1) == "2.8"
    assert FR.percent(0.755) == f"76{NBSP}%" and EN.percent(0.755) == "76%"
    assert FR.day(dt.date(2026, 11, 30)) == "30 nov. 2026" and EN.day(dt.date(2026, 11, 30)) == "30 Nov 2026"
    assert FR.month_name("2026-02") == "février 2026" and EN.month_name("2026-02") == "February 2026"
    assert FR.month_tick("2026-07") == "juil.\n2026" and FR.short_day(dt.date(2026, 3, 2)) == "2 mars"
    assert FR.days(1) == "1 jour" and FR.days(2) == "2 jours" and FR.days(0) == "0 jour"  # French: 0 is singular
    assert FR.change_short({"difference": 1500, "ratio": 1.5, "direction": "up"}) == f"+1{NNBSP}500 (+150{NBSP}%)"
    assert FR.change_short({"difference": -2, "ratio": None, "direction": "down"}) == "−2 (aucun avant)"
    assert FR.theme("usability") == "Facilité d’usage" and FR.theme(None) == "Autre"
    assert FR.reuse_type("news_article") == "article de presse" and FR.reuse_type(None) == "réutilisation"


def test_the_language_setting() -> None:
    assert Settings.from_env({}).language == "fr"
    assert Settings.from_env({"USAGE_LANGUAGE": " EN "}).language == "en"
    with pytest.raises(SettingsError, match=r"USAGE_LANGUAGE='de' is not available: use one of en, fr"):
        Settings.from_env({"USAGE_LANGUAGE": "de"})


def test_the_digest_is_french_by_default_and_english_on_request(tmp_path: Path) -> None:
    published = build_published_db(tmp_path / "usage.duckdb")
    asset.write_digests(published, tmp_path / "fr", REPORT_DATE, PARIS)
    html = (tmp_path / "fr" / "ville-de-test-2026-W47.html").read_text()
    markdown = (tmp_path / "fr" / "ville-de-test-2026-W47.md").read_text()
    assert '<html lang="fr">' in html and "<h2>La semaine en bref</h2>" in html
    assert "Synthèse hebdomadaire data.gouv.fr · semaine 47, 16 nov. 2026 – 22 nov. 2026" in html
    lede = "L’usage de vos 2 jeux de données sur data.gouv.fr pendant les 7 jours du 14 nov. 2026 au 20 nov. 2026."
    assert lede in html
    assert f"**Vues (7 jours) :** 175, +70 (+67{NBSP}%) par rapport aux 7 jours précédents" in markdown
    assert "## Questions en attente de votre réponse" in markdown and "| 50 jours (depuis le 1 oct. 2026) |" in markdown
    assert "| novembre 2026 | octobre 2026 |" in markdown and "**Fraîcheur** : données pas à jour" in markdown
    assert "4 des 8 discussions ouvertes ont reçu une réponse (50" in markdown
    assert "Satisfaction moyenne" in html and "Ce qui leur manque" in html and "Facilité d’usage (2)" in html
    assert "a publié 1 réutilisation (application) ; a ouvert 1 discussion ; dernière activité le 18 nov. 2026" in html
    chart = (tmp_path / "fr" / "ville-de-test-2026-W47-daily.svg").read_text()
    assert "Vues gagnées par jour" in chart and "Téléchargements gagnés par jour" in chart
    # Hostile text from the portal stays escaped inside translated sentences.
    other = (tmp_path / "fr" / "region-exemple-2026-W47.html").read_text()
    assert "Région &lt;Exemple&gt; &amp; Co" in other and "<Exemple>" not in other

    asset.write_digests(published, tmp_path / "en", REPORT_DATE, PARIS, "en")
    english = (tmp_path / "en" / "ville-de-test-2026-W47.html").read_text()
    assert '<html lang="en">' in english and "<h2>This week at a glance</h2>" in english
    assert "La semaine en bref" not in english


def test_alerts_are_french_by_default() -> None:
    alert = Alert(
        "sla", "d1", "Fichier <introuvable>", "https://x.fr/d1", "Sirene", "Jean", "freshness",
        None, "awaiting_producer", dt.datetime(2026, 11, 10, 9, tzinfo=dt.UTC), 10,
    )  # fmt: skip
    text = format_message([alert], SLA_DAYS)
    assert text.splitlines()[0] == (
        "**Discussions sur vos jeux de données data.gouv.fr** : 1 en attente de réponse depuis plus de 7 jours"
    )
    assert "- **10 jours** [Fichier &lt;introuvable&gt;](https://x.fr/d1) sur « Sirene », posée par Jean, " in text
    assert text.endswith("en attente depuis le 10 nov. 2026 · thème : Fraîcheur")


def _email_tick(resources: dict, cursor: str | None, instance: dg.DagsterInstance) -> tuple[str | None, str | None]:
    context = dg.build_sensor_context(cursor=cursor, instance=instance, resources=resources)
    data = discussion_alerts_email.evaluate_tick(context)
    return data.cursor, data.skip_message


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def test_alerts_by_email_once_each_and_retried_after_a_failure(
    tmp_path: Path, dagster_instance: dg.DagsterInstance
) -> None:
    published_dir = tmp_path / "published"
    publish(published_dir, [D1, D2], {"d1": 10, "d2": SLA_DAYS})
    (tmp_path / "recipients.yaml").write_text("alerts: [equipe-donnees@ville.fr]\n")
    with socket.socket() as probe:  # a port nobody listens on: the server is down
        probe.bind(("127.0.0.1", 0))
        down = f"smtp://127.0.0.1:{probe.getsockname()[1]}"

    def resources(smtp_url: str | None) -> dict:
        return {
            "data_dir": asset.DataDir(path=str(tmp_path)),
            "alerts": DiscussionAlerts(answer_sla_days=SLA_DAYS),
            "mailer": Mailer(smtp_url=smtp_url, sender="usage@ville.fr"),
        }

    cursor, message = _email_tick(resources(None), None, dagster_instance)
    assert cursor is None and "set USAGE_SMTP_URL" in message
    with MailCatcher() as inbox:
        cursor, message = _email_tick(resources(inbox.url), None, dagster_instance)  # baseline: d1 is overdue
        sent = "sent one message to equipe-donnees@ville.fr (e-mail): 0 new discussion(s), 1 over the answer SLA"
        assert message == sent
        to, mail = inbox.messages[0]
        assert to == ["equipe-donnees@ville.fr"] and mail["From"] == "usage@ville.fr"
        assert mail["Subject"] == (
            "Discussions sur vos jeux de données data.gouv.fr : 1 en attente de réponse depuis plus de 7 jours"
        )
        assert "Fichier introuvable" in mail.get_content() and "Mise à jour" not in mail.get_content()

        publish(published_dir, [D1, D2, D3], {"d1": 10, "d2": SLA_DAYS, "d3": 1})
        failed_cursor, message = _email_tick(resources(down), cursor, dagster_instance)  # never raises
        assert failed_cursor == cursor and "not sent, retried on the next tick" in message
        cursor, _ = _email_tick(resources(inbox.url), failed_cursor, dagster_instance)
        cursor, message = _email_tick(resources(inbox.url), cursor, dagster_instance)
        assert "nothing new" in message
    assert len(inbox.messages) == 2 and "Colonne vide dans le CSV" in inbox.messages[1][1].get_content()
