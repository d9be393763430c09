"""$USAGE_DATA_DIR as a Dagster resource: the one place that names the files the pipeline reads and writes there."""

from pathlib import Path

import dagster as dg


class DataDir(dg.ConfigurableResource):
    """The data folder, an absolute path (settings.py resolves it once, from wherever the command was started).

    ::

        <path>/warehouse.duckdb       the pipeline's DuckDB (only the pipeline opens it)
        <path>/published/             what BI tools and people read: usage.duckdb, parquet/, reports/, quality/
        <path>/dagster_home/          Dagster's runs and events when the CLI starts them
        <path>/events.csv             community events (the producer writes it)
        <path>/theme_corrections.csv  discussion themes corrected by the producer (discussion_id,theme)
        <path>/theme_model/           the theme classifier retrained by `usage-pipeline train-themes`
        <path>/surveys/surveys.yaml   survey files and their mapping (the producer writes them)
        <path>/portals.yaml           the producer's own Opendatasoft or CKAN portals
        <path>/recipients.yaml        who gets each organization's weekly digest by e-mail
    """

    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def published(self) -> Path:
        return self.root / "published"

    @property
    def published_database(self) -> Path:
        return self.published / "usage.duckdb"

    @property
    def parquet_dir(self) -> Path:
        return self.published / "parquet"

    @property
    def reports_dir(self) -> Path:
        """The weekly digests."""
        return self.published / "reports"

    @property
    def quality_docs(self) -> Path:
        """Great Expectations Data Docs of the latest run's validations."""
        return self.published / "quality"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def events_file(self) -> Path:
        return self.root / "events.csv"

    @property
    def recipients_file(self) -> Path:
        return self.root / "recipients.yaml"

    @property
    def reuse_lead_statuses_file(self) -> Path:
        return self.root / "reuse_leads_status.csv"

    @property
    def theme_corrections_file(self) -> Path:
        return self.root / "theme_corrections.csv"

    @property
    def theme_model_dir(self) -> Path:
        return self.root / "theme_model"

    @property
    def surveys_dir(self) -> Path:
        return self.root / "surveys"

    @property
    def portals_file(self) -> Path:
        return self.root / "portals.yaml"
