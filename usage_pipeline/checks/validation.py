"""Great Expectations 1.x over DuckDB queries: one validation per check and run, results and Data Docs."""

import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations import Expectation

from usage_pipeline.files import staged

SAMPLE_ROWS = 5
# GX logs chatter while validating: keep the pipeline's logs readable (progress bars are off per context).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
logging.getLogger("great_expectations").setLevel(logging.WARNING)


@dataclass(frozen=True)
class RunScope:
    """What a check evaluation is about: the run, its logical date and the datasets it wrote."""

    run_id: str
    run_date: dt.date
    dataset_ids: tuple[str, ...] = ()
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class Check:
    """A named expectation suite over the rows one SQL query returns.

    ``sql`` may use the parameters ``$run_date`` and ``$dataset_ids``; ``expectations`` builds the suite
    for a run (some bounds, like "not in the future", depend on it). ERROR checks block what is downstream;
    on the raw snapshot, a failing dataset's new rows of ``raw_table`` are quarantined.
    """

    name: str
    description: str
    sql: str
    expectations: Callable[[RunScope], list[Expectation]]
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
    dataset_column: str | None = "dataset_id"
    raw_table: str | None = None

    @property
    def blocking(self) -> bool:
        return self.severity == dg.AssetCheckSeverity.ERROR


@dataclass
class Outcome:
    """The result of one check: what failed, on which datasets, with a few offending rows."""

    check: Check
    asset: str
    passed: bool
    rows_checked: int
    failures: list[dict[str, Any]]  # one per failed expectation: type, kwargs, unexpected count, sample rows
    failing_datasets: list[str]
    unexpected_rows: list[list[dict[str, Any]]] = field(default_factory=list)  # per failure, every offending row

    def summary(self) -> str:
        """One line per failed expectation, naming datasets and sample values."""
        lines = []
        for failure in self.failures:
            lines.append(
                f"{self.check.name} on {self.asset}: {failure['expectation']} {failure['kwargs']} failed for "
                f"{failure['unexpected_count']} of {self.rows_checked} rows; sample: {failure['sample']}"
            )
        return "\n".join(lines)

    def metadata(self) -> dict[str, dg.MetadataValue]:
        return {
            "rows_checked": dg.MetadataValue.int(self.rows_checked),
            "failing_datasets": dg.MetadataValue.json(self.failing_datasets[:50]),
            "failed_expectations": dg.MetadataValue.json(self.failures),
            "severity": dg.MetadataValue.text(self.check.severity.value),
            "description": dg.MetadataValue.text(self.check.description),
        }

    def result(self, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=self.check.name,
            passed=self.passed,
            severity=self.check.severity,
            metadata=self.metadata(),
            description=self.check.description,
        )


class Validator:
    """One ephemeral GX context per run: each (asset, check) suite validated once, kept for the Data Docs."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self._source = self.context.data_sources.add_pandas("usage_pipeline")
        self._validated = False

    def validate(self, check: Check, asset: str, frame: pd.DataFrame, scope: RunScope) -> Outcome:
        """Run the check's suite on ``frame``: one GX validation for every row the run wrote."""
        name = f"{asset.replace('/', '.')}.{check.name}"
        batch = self._source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("run")
        suite = self.context.suites.add(gx.ExpectationSuite(name=name, expectations=check.expectations(scope)))
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(name=name, validation_definitions=[definition], result_format={"result_format": "COMPLETE"})
        )
        run = checkpoint.run(batch_parameters={"dataframe": frame})
        self._validated = True
        (result,) = run.run_results.values()
        return _outcome(check, asset, frame, result.results)

    def build_data_docs(self, target: Path) -> None:
        """Write the HTML Data Docs of this run's validations to ``target``, replacing the previous ones."""
        if not self._validated:
            return
        with staged(target) as staging:
            site = {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(staging)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
            self.context.add_data_docs_site(site_name=staging.name, site_config=site)
            try:
                self.context.build_data_docs(site_names=[staging.name])
            finally:
                self.context.delete_data_docs_site(staging.name)


def _outcome(check: Check, asset: str, frame: pd.DataFrame, results: Sequence[Any]) -> Outcome:
    failures, failing, unexpected = [], set(), []
    for result in results:
        if result.success:
            continue
        indexes = result.result.get("unexpected_index_list")
        rows = frame.iloc[list(indexes)] if indexes is not None else frame
        if check.dataset_column and check.dataset_column in rows:
            failing |= set(rows[check.dataset_column].dropna().astype(str))
        failures.append(
            {
                "expectation": result.expectation_config.type,
                "kwargs": {k: _plain(v) for k, v in result.expectation_config.kwargs.items() if k != "batch_id"},
                "unexpected_count": int(result.result.get("unexpected_count") or len(rows)),
                "observed": _plain(result.result.get("observed_value")),
                "sample": _records(rows.head(SAMPLE_ROWS)),
            }
        )
        unexpected.append(_records(rows))
    return Outcome(check, asset, not failures, len(frame), failures, sorted(failing), unexpected)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def _plain(value: Any) -> Any:
    """JSON-friendly values for metadata and tables."""
    return json.loads(json.dumps(value, default=str))


_current: Validator | None = None


def validator_for(run_id: str) -> Validator:
    """The run's validator, shared by its steps (the job runs them in one process)."""
    global _current
    if _current is None or _current.run_id != run_id:
        _current = Validator(run_id)
    return _current


def run_check(
    conn: duckdb.DuckDBPyConnection, validator: Validator, check: Check, asset: str, scope: RunScope
) -> Outcome:
    """Query the check's rows and validate them."""
    parameters = {"run_date": scope.run_date, "dataset_ids": list(scope.dataset_ids)}
    used = {name: value for name, value in parameters.items() if f"${name}" in check.sql}
    frame = conn.execute(check.sql, used).df()
    return validator.validate(check, asset, frame, scope)


def record_outcomes(conn: duckdb.DuckDBPyConnection, outcomes: Sequence[Outcome], scope: RunScope) -> int:
    """Store the outcomes in quality.check_results: a summary row per check, a row per failing dataset.

    Evaluating a check again in the same run replaces its rows. Returns the rows written.
    """
    rows = []
    for outcome in outcomes:
        base = {
            "run_id": scope.run_id,
            "run_date": scope.run_date,
            "asset": outcome.asset,
            "check_name": outcome.check.name,
            "severity": outcome.check.severity.value,
            "evaluated_at": scope.now,
        }
        failed = [{"expectation": f["expectation"], "kwargs": f["kwargs"]} for f in outcome.failures]
        observed = {"rows_checked": outcome.rows_checked, "failing_datasets": len(outcome.failing_datasets)}
        rows.append(base | {"dataset_id": None, "passed": outcome.passed, "observed": observed, "details": failed})
        for dataset_id in outcome.failing_datasets:
            mine = [
                (failure, [row for row in offending if str(row.get(outcome.check.dataset_column)) == dataset_id])
                for failure, offending in zip(failed, outcome.unexpected_rows, strict=True)
            ]
            mine = [(failure, offending) for failure, offending in mine if offending]
            rows.append(
                base
                | {
                    "dataset_id": dataset_id,
                    "passed": False,
                    "observed": [row for _, offending in mine for row in offending[:SAMPLE_ROWS]],
                    "details": [failure for failure, _ in mine],
                }
            )
    for row in rows:
        row["observed"] = json.dumps(row["observed"], ensure_ascii=False, default=str)
        row["details"] = json.dumps(row["details"], ensure_ascii=False, default=str)
    for outcome in outcomes:
        conn.execute(
            "DELETE FROM quality.check_results WHERE run_id = ? AND asset = ? AND check_name = ?",
            [scope.run_id, outcome.asset, outcome.check.name],
        )
    if rows:
        frame = pd.DataFrame(rows)
        conn.register("check_rows", frame)
        try:
            conn.execute(
                "INSERT INTO quality.check_results BY NAME SELECT run_id, run_date::DATE AS run_date, asset, "
                "check_name, dataset_id::VARCHAR AS dataset_id, severity, passed, observed, details, evaluated_at "
                "FROM check_rows"
            )
        finally:
            conn.unregister("check_rows")
    return len(rows)
