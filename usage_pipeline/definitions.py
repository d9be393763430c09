"""The one Definitions of the project: raw ingestion -> checks -> SQL models -> publication -> insights."""

import warnings

import dagster as dg

from usage_pipeline.checks.freshness import build_freshness
from usage_pipeline.checks.raw import raw_checks
from usage_pipeline.checks.reporting import reporting_checks
from usage_pipeline.ingest.assets import build_raw_snapshot_asset
from usage_pipeline.ingest.events import community_events
from usage_pipeline.ingest.partitions import dataset_date_partitions
from usage_pipeline.ingest.reuse_link_checks import ReuseLinkChecker, reuse_link_checks
from usage_pipeline.ingest.schedules import DAILY_JOB_NAME, build_daily_schedule
from usage_pipeline.ingest.sensors import dataset_discovery_sensor
from usage_pipeline.ingest.theme_corrections import theme_corrections
from usage_pipeline.insights.alerts import DiscussionAlerts, discussion_alerts, discussion_alerts_email
from usage_pipeline.insights.digest.asset import ReaderLocale, weekly_digest
from usage_pipeline.insights.digest.delivery import Mailer
from usage_pipeline.leads.asset import LeadFinder, reuse_leads
from usage_pipeline.leads.statuses import reuse_lead_statuses
from usage_pipeline.model_catalog import all_models
from usage_pipeline.models import build_transform_asset
from usage_pipeline.own_portals.assets import own_portal_snapshot
from usage_pipeline.portal.resource import UdataResource
from usage_pipeline.publish import build_publish_asset
from usage_pipeline.publish_postgres import PostgresPublication, build_postgres_asset
from usage_pipeline.settings import Settings
from usage_pipeline.surveys.assets import SURVEY_RESPONSES_KEY, survey_responses
from usage_pipeline.surveys.sensors import SURVEY_JOB_NAME, survey_files
from usage_pipeline.warehouse import Warehouse

# Run monitoring fails a run still in progress after this long (a crashed worker the daemon cannot see, say),
# so that it never holds the usage_warehouse pool for good.
MAX_RUNTIME = {"dagster/max_runtime": str(6 * 3600)}

# The single-run backfill policy is what makes one run a day possible; Dagster still labels it beta.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Every resource, configured by ``settings``: the assets and sensors read paths and options from here."""
    return {
        "udata": UdataResource.from_settings(settings),
        "warehouse": Warehouse(
            database=str(settings.paths.warehouse), lock_wait=settings.warehouse_lock_wait, timezone=settings.timezone
        ),
        "locale": ReaderLocale(language=settings.language, timezone=settings.timezone),
        # The URL may hold a password: read from the environment, the UI shows the variable's name, not its value.
        "mailer": Mailer(
            smtp_url=dg.EnvVar("USAGE_SMTP_URL") if settings.smtp_url else None, sender=settings.smtp_from
        ),
        "data_dir": settings.paths,
        "postgres": PostgresPublication(
            url=dg.EnvVar("USAGE_PUBLISH_POSTGRES_URL") if settings.publish_postgres_url else None
        ),
        "link_checker": ReuseLinkChecker(enabled=settings.link_checks),
        # The token is a secret: read from the environment, the UI shows the variable's name.
        "lead_finder": LeadFinder(
            sources=list(settings.lead_sources),
            github_api_url=settings.github_api_url,
            github_token=dg.EnvVar("USAGE_GITHUB_TOKEN") if settings.github_token else None,
            hal_api_url=settings.hal_api_url,
            portal_url=settings.portal_url,
            timeout=settings.http_timeout,
        ),
        "alerts": DiscussionAlerts(
            webhook_url=settings.alert_webhook_url,
            answer_sla_days=settings.answer_sla_days,
            timezone=settings.timezone,
            language=settings.language,
        ),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """Assets, jobs, schedules, sensors and resources for ``settings``."""
    models = all_models()
    assets = [
        build_raw_snapshot_asset(
            dataset_date_partitions(settings.start_date), raw_checks(settings.discussion_count_tolerance)
        ),
        community_events,
        theme_corrections,
        reuse_link_checks,
        reuse_leads,
        reuse_lead_statuses,
        survey_responses,
        own_portal_snapshot,
        build_transform_asset(models, lambda model: reporting_checks(model) if model.schema == "reporting" else []),
        build_publish_asset(models),
        build_postgres_asset(models),
        weekly_digest,
    ]
    freshness, freshness_schedule = build_freshness(settings.freshness_hour, settings.timezone)
    daily_job = dg.define_asset_job(
        DAILY_JOB_NAME,
        selection=dg.AssetSelection.all() - dg.AssetSelection.checks(freshness),
        executor_def=dg.in_process_executor,  # one process, one DuckDB writer at a time
        description="Snapshot every followed dataset for one date (one run), rebuild the models, publish.",
        tags=MAX_RUNTIME,
    )
    survey_job = dg.define_asset_job(
        SURVEY_JOB_NAME,
        selection=dg.AssetSelection.assets(SURVEY_RESPONSES_KEY).downstream() - dg.AssetSelection.checks(freshness),
        executor_def=dg.in_process_executor,
        description="Ingest new or changed survey files, rebuild what reads them, publish.",
        tags=MAX_RUNTIME,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return dg.Definitions(
        assets=assets,
        asset_checks=[freshness],
        jobs=[daily_job, survey_job],
        schedules=[build_daily_schedule(settings.timezone), freshness_schedule],
        sensors=[dataset_discovery_sensor, discussion_alerts, discussion_alerts_email, survey_files],
        resources=build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev -w workspace.yaml`, configured by the USAGE_* environment variables."""
    return build_definitions(Settings.from_env())
