"""The one Definitions of the project: raw snapshot -> SQL models -> publication, with their automation."""

import warnings

import dagster as dg
from dagster_duckdb import DuckDBResource

from usage_pipeline.checks.freshness import build_freshness
from usage_pipeline.checks.raw import raw_checks
from usage_pipeline.checks.reporting import reporting_checks
from usage_pipeline.ingest.assets import build_raw_snapshot_asset
from usage_pipeline.ingest.partitions import dataset_date_partitions
from usage_pipeline.ingest.schedules import DAILY_JOB_NAME, TIMEZONE, daily_refresh_schedule
from usage_pipeline.ingest.sensors import dataset_discovery_sensor
from usage_pipeline.insights.alerts import build_alert_sensor
from usage_pipeline.insights.assets import discussion_themes
from usage_pipeline.insights.digest import build_digest_asset
from usage_pipeline.insights.events import build_events_asset
from usage_pipeline.insights.link_health import build_link_health_asset
from usage_pipeline.models import build_model_asset, load_models
from usage_pipeline.own_portals.assets import build_own_portals_asset
from usage_pipeline.portal.resource import UdataResource
from usage_pipeline.publish import PUBLISHED_KEY, QUALITY_DOCS, build_publish_asset
from usage_pipeline.settings import Settings
from usage_pipeline.surveys.assets import SURVEY_RESPONSES_KEY, build_survey_asset
from usage_pipeline.surveys.sensors import build_survey_sensor

SURVEY_JOB_NAME = "survey_ingest"

# The single-run backfill policy is what makes one run a day possible; Dagster still labels it beta.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Assets, the daily job, its schedule, the discovery sensor and resources for ``settings``."""
    models = load_models()
    docs = settings.published_dir / QUALITY_DOCS
    assets = [
        build_raw_snapshot_asset(
            dataset_date_partitions(settings.start_date), raw_checks(settings.discussion_count_tolerance), docs
        ),
        *(
            build_model_asset(model, models, reporting_checks(model) if model.schema == "reporting" else [], docs)
            for model in models
        ),
        discussion_themes,
        build_events_asset(settings.data_dir / "events.csv"),
        build_link_health_asset(enabled=settings.link_checks),
        build_survey_asset(settings.data_dir / "surveys"),
        build_own_portals_asset(settings.data_dir / "portals.yaml"),
        build_publish_asset(models, settings.published_dir),
        build_digest_asset(settings.published_dir, [PUBLISHED_KEY]),
    ]
    freshness, freshness_schedule = build_freshness(settings.freshness_hour, TIMEZONE)
    daily_job = dg.define_asset_job(
        DAILY_JOB_NAME,
        selection=dg.AssetSelection.all() - dg.AssetSelection.checks(freshness),
        executor_def=dg.in_process_executor,  # one process, one DuckDB writer at a time
        description="Snapshot every followed dataset for one date (one run), rebuild the models, publish.",
    )
    survey_job = dg.define_asset_job(
        SURVEY_JOB_NAME,
        selection=dg.AssetSelection.assets(SURVEY_RESPONSES_KEY).downstream() - dg.AssetSelection.checks(freshness),
        executor_def=dg.in_process_executor,
        description="Ingest new or changed survey files, rebuild what reads them, publish.",
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return dg.Definitions(
        assets=assets,
        asset_checks=[freshness],
        jobs=[daily_job, survey_job],
        schedules=[daily_refresh_schedule, freshness_schedule],
        sensors=[
            dataset_discovery_sensor,
            build_alert_sensor(settings.published_dir, settings.alert_webhook_url, settings.answer_sla_days),
            build_survey_sensor(settings.data_dir / "surveys", SURVEY_JOB_NAME),
        ],
        resources={
            "udata": UdataResource.from_settings(settings),
            "warehouse": DuckDBResource(database=str(settings.warehouse_path)),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev -w workspace.yaml`, configured by the USAGE_* environment variables."""
    return build_definitions(Settings.from_env())
