"""`usage-pipeline demo`: a few days of refreshes against a generated portal served on 127.0.0.1.

The generated data.gouv.fr-like portal comes with the producer's own Opendatasoft and CKAN portals (also
generated and served locally): some datasets are harvested from them, so twins and combined usage show. The
demo also writes what a producer keeps in its data folder (an events.csv, a survey export and its surveys.yaml),
plays a new reuse and a new question on the second day, serves the reuses' sites (one in seven is gone, so its
link breaks) and a webhook that receives the discussion alerts: every published table gets rows.
"""

import datetime as dt
import os
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import duckdb

from usage_pipeline import cli
from usage_pipeline.data_dir import DataDir
from usage_pipeline.demo.ckan_server import CkanServer, CkanWorld, generate_ckan_world
from usage_pipeline.demo.lead_servers import GitHubServer, HalServer, citing_works
from usage_pipeline.demo.mail_server import MailCatcher
from usage_pipeline.demo.ods_server import DEMO_ANALYTICS_KEY, OdsServer, OdsWorld, generate_ods_world
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.demo.producer_files import (
    ALERTS_ADDRESS,
    write_events,
    write_recipients,
    write_survey,
    write_theme_corrections,
)
from usage_pipeline.demo.webhook_server import WebhookReceiver
from usage_pipeline.demo.world import add_news, advance_day, generate_world
from usage_pipeline.insights.alerts import email_channel, evaluate, webhook_channel
from usage_pipeline.insights.digest.delivery import Mailer
from usage_pipeline.insights.language import reader
from usage_pipeline.settings import Settings, absolute
from usage_pipeline.surveys.responses import SALT_ENV

ODS_DOMAIN = "data.exemple-metropole.fr"
CKAN_DOMAIN = "ckan.exemple-region.fr"
ODS_KEY_VARIABLE = "DEMO_ODS_KEY"
DEMO_PSEUDONYM_SALT = "demo-only-salt: set your own secret USAGE_PSEUDONYM_SALT"
DEMO_GITHUB_TOKEN = "demo-github-token"  # the local GitHub stand-in accepts only this one


def host_reuse_sites(world: World, base_url: str) -> None:
    """Point the reuses not hosted yet at sites served by the demo portal: the demo never leaves the machine.

    One reuse in seven (the 4th, 11th... by id) points at a page that is gone; a hosted reuse keeps its address.
    """
    reuses = sorted({reuse["id"]: reuse for entry in world.entries.values() for reuse in entry["reuses"]}.items())
    for index, (reuse_id, reuse) in enumerate(reuses):
        if not str(reuse.get("url", "")).startswith(base_url):
            reuse["url"] = f"{base_url}/reuse-sites/{'gone/' if index % 7 == 3 else ''}{reuse_id}"


def harvest_from_own_portals(world: World, ods: OdsWorld, ckan: CkanWorld) -> None:
    """Make the first datasets harvested copies of own-portal datasets, as data.gouv.fr's harvesters record them."""
    datasets = [entry["dataset"] for entry in world.entries.values()]
    for dataset, ods_id in zip(datasets[:3], list(ods.datasets)[:3], strict=False):
        explore = f"https://{ODS_DOMAIN}/explore/dataset/{ods_id}/"
        dataset["harvest"] = {"backend": "DCAT", "domain": ODS_DOMAIN, "remote_id": explore, "remote_url": explore}
    for dataset, package in zip(datasets[3:5], ckan.datasets[:2], strict=False):
        remote_url = f"https://{CKAN_DOMAIN}/dataset/{package['name']}"
        dataset["harvest"] = {
            "backend": "CKAN",
            "domain": CKAN_DOMAIN,
            "remote_id": package["id"],
            "remote_url": remote_url,
        }


def write_portals_yaml(paths: DataDir, ods_url: str, ckan_url: str) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.portals_file.write_text(
        f"# Written by `usage-pipeline demo`: the generated own portals served on 127.0.0.1.\n"
        f"portals:\n  - name: metropole\n    kind: ods\n    url: {ods_url}\n    domain: {ODS_DOMAIN}\n"
        f"    api_key_env: {ODS_KEY_VARIABLE}\n  - name: region\n    kind: ckan\n    url: {ckan_url}\n"
        f"    domain: {CKAN_DOMAIN}\n",
        encoding="utf-8",
    )


def print_alerts(hook: WebhookReceiver, already: int) -> int:
    """The alert messages the webhook received since ``already``; returns how many it holds now."""
    messages = hook.messages
    for message in messages[already:]:
        print("  alert posted to the webhook:\n    " + message.get("text", "").replace("\n", "\n    "))
    return len(messages)


def print_highlights(database: Path) -> None:
    """What a producer looks at first: the questions waiting for an answer, and the week's most viewed datasets."""
    with duckdb.connect(str(database), read_only=True) as conn:
        waiting = conn.execute(
            "SELECT waiting_days, dataset_title, title, url FROM reporting.discussions_awaiting_answer "
            "ORDER BY waiting_since LIMIT 5"
        ).fetchall()
        top = conn.execute(
            """
            SELECT datasets.title, sum(daily.views_delta)::BIGINT AS views, sum(daily.downloads_delta)::BIGINT
            FROM reporting.dataset_usage_daily AS daily JOIN reporting.datasets AS datasets USING (dataset_id)
            WHERE daily.date > (SELECT max(date) FROM reporting.dataset_usage_daily) - 7
            GROUP BY datasets.title HAVING views > 0 ORDER BY views DESC LIMIT 5
            """
        ).fetchall()
        leads = conn.execute(
            "SELECT source, title, url, dataset_title FROM reporting.reuse_leads WHERE status = 'new' "
            "ORDER BY source, url"
        ).fetchall()
    print(f"\nReuses nobody declared, to invite their authors ({len(leads)} found; reporting.reuse_leads):")
    for source, title, url, dataset in leads[:6]:
        print(f"  {source:<7} {title}  cites {dataset}\n          {url}")
    print("\nQuestions waiting for an answer (oldest first):")
    for days, dataset, title, url in waiting:
        print(f"  {days:>4} days  {title}  ({dataset})\n             {url}")
    print("\nThe week's most viewed datasets (views and downloads gained):")
    for title, views, downloads in top:
        print(f"  {views:>6} views  {downloads:>6} downloads  {title}")


def command(name: str) -> str:
    """How to call a command of this environment from here (``.venv/bin/usage-pipeline`` when not activated)."""
    installed = Path(sys.executable).with_name(name)
    return os.path.relpath(installed) if installed.exists() and shutil.which(name) != str(installed) else name


def run_demo(data_dir: Path, *, days: int = 3, seed: int = 0) -> None:
    """Generate the portals and the producer's files, refresh once a day for ``days`` days ending today, and show
    what came out: the alerts posted, the questions waiting, the top datasets, where every file is."""
    today = dt.date.today()
    first_day = today - dt.timedelta(days=days - 1)
    world = generate_world(2, 8, seed=seed, today=first_day)
    ods = generate_ods_world(6, 60, seed=seed, today=today, public_domain=ODS_DOMAIN)
    ckan = generate_ckan_world(4, seed=seed, today=today)
    harvest_from_own_portals(world, ods, ckan)
    organizations = tuple(organization["slug"] for organization in world.organizations.values())
    with ExitStack() as servers:
        server = servers.enter_context(PortalServer(world))
        ods_server = servers.enter_context(OdsServer(ods))
        ckan_server = servers.enter_context(CkanServer(ckan))
        hook = servers.enter_context(WebhookReceiver())
        repositories, documents, unlinked = citing_works(world)
        world.unlinked_reuses.extend(unlinked)
        github = servers.enter_context(GitHubServer(repositories, token=DEMO_GITHUB_TOKEN))
        hal = servers.enter_context(HalServer(documents))
        mail = servers.enter_context(MailCatcher(absolute(data_dir) / "outbox"))
        print(f"demo portal (udata API v1 + metrics API) on {server.url}, organizations: {', '.join(organizations)}")
        print(f"own portals: Opendatasoft on {ods_server.url}, CKAN on {ckan_server.url}; alert webhook on {hook.url}")
        print(f"SMTP server for the digest e-mails on {mail.url}")
        print(f"lead sources: GitHub's search API on {github.url}, HAL's on {hal.url}, the portal's reuse search")
        os.environ["USAGE_GITHUB_TOKEN"] = DEMO_GITHUB_TOKEN  # the resource reads it from the environment
        os.environ["USAGE_SMTP_URL"] = mail.url  # the resource reads it from the environment, as in production
        host_reuse_sites(world, server.url)
        settings = Settings(
            portal_url=server.url,
            metrics_api_url=server.url,
            organizations=organizations,
            data_dir=data_dir,
            start_date=first_day - dt.timedelta(days=7),
            alert_webhook_url=hook.url,
            smtp_url=mail.url,
            smtp_from="usage-pipeline@demo.example.fr",
            lead_sources=("github", "hal", "portal"),
            github_token=DEMO_GITHUB_TOKEN,
            github_api_url=github.url,
            hal_api_url=hal.url,
        )
        paths = settings.paths
        write_portals_yaml(paths, ods_server.url, ckan_server.url)
        write_events(paths, world, first_day)
        write_survey(paths, world, first_day, seed=seed)
        write_theme_corrections(paths, world)
        write_recipients(paths, organizations)
        os.environ.setdefault(ODS_KEY_VARIABLE, DEMO_ANALYTICS_KEY)
        os.environ.setdefault(SALT_ENV, DEMO_PSEUDONYM_SALT)
        instance = cli.dagster_instance(settings)
        channels = {
            "webhook": webhook_channel(hook.url),
            "email": email_channel(Mailer(smtp_url=mail.url, sender=settings.smtp_from), paths.recipients_file),
        }
        cursors: dict[str, str | None] = dict.fromkeys(channels)
        alerts_seen = e_mails_seen = 0
        for offset in range(days):
            outcome = cli.refresh(settings, first_day + dt.timedelta(days=offset), instance)
            cli.print_summary(outcome, settings)
            # What the two alert sensors do under the Dagster daemon, once after each daily run.
            for name, channel in channels.items():
                tick = evaluate(cursors[name], paths.published, channel, settings.answer_sla_days, settings.timezone,
                                words=reader(settings.language))  # fmt: skip
                cursors[name] = tick.cursor if isinstance(tick, dg.SensorResult) else cursors[name]
            alerts_seen = print_alerts(hook, alerts_seen)
            for to, message in mail.messages[e_mails_seen:]:
                print(f"  e-mail to {', '.join(to)}: {message['Subject']}")
            e_mails_seen = len(mail.messages)
            if offset < days - 1:
                advance_day(world, seed=seed + offset)
                if offset == 0:
                    reuse_id, discussion_id = add_news(world, seed=seed)
                    print(f"  the next day brings a new reuse ({reuse_id}) and a new question ({discussion_id})")
                host_reuse_sites(world, server.url)
                for tracking in ckan.tracking.values():
                    tracking["total"] += 3 + offset  # a few page views a day on the CKAN portal
    print_highlights(paths.published_database)
    alerts = sum(ALERTS_ADDRESS in to for to, _ in mail.messages)
    print(
        f"\nE-mails received by the local SMTP server, in {mail.outbox}/: {len(mail.messages) - alerts} digests "
        f"(one per organization and ISO week) and {alerts} discussion alerts"
    )
    relative = os.path.relpath(paths.root)
    print(
        f"\nDone. Everything is in {paths.root}:\n"
        f"  {paths.published_database}  (DuckDB, schema reporting; every table and column described)\n"
        f"  {paths.parquet_dir}/*.parquet  (the same tables)\n"
        f"  {paths.reports_dir}/*.html  (weekly digests)   {paths.quality_docs}/index.html  (quality checks)\n"
        f"Look at the tables without another tool:\n"
        f"  {command('usage-pipeline')} tables --data-dir {relative}\n"
        f"  {command('usage-pipeline')} show discussions_awaiting_answer --data-dir {relative}\n"
        f"The runs and assets in the Dagster UI:\n"
        f"  DAGSTER_HOME={paths.dagster_home} USAGE_DATA_DIR={paths.root} "
        f"USAGE_START_DATE={settings.start_date} {command('dagster')} dev -w workspace.yaml"
    )
