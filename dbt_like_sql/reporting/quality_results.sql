-- reporting.quality_results
-- Data health over time: every evaluation of a quality check (one summary row with a null dataset_id) and
-- every dataset a check failed on, with the offending values. ERROR checks block the run's publication (the
-- published tables keep the last good state; the failing results appear here at the next publication);
-- WARN checks only report. Checks are described in the README ("Quality checks").
-- grain: run_id, asset, check_name, dataset_id
-- columns:
--   run_date DATE: The logical date of the run that evaluated the check.
--   asset VARCHAR: The checked asset: raw/udata_snapshot or reporting/<table>.
--   check_name VARCHAR: The check (a Great Expectations suite).
--   dataset_id VARCHAR: A dataset the check failed on; null on the check's summary row.
--   severity VARCHAR: ERROR (blocking) or WARN (reported only).
--   passed BOOLEAN: Whether the check passed (summary row) or false for a failing dataset.
--   observed VARCHAR: JSON: rows checked and failing datasets (summary), or the dataset's offending rows.
--   details VARCHAR: JSON: the expectations that failed, with their arguments.
--   run_id VARCHAR: The Dagster run (open it in the Dagster UI).
--   evaluated_at TIMESTAMP WITH TIME ZONE: When the check ran.
select run_date, asset, check_name, dataset_id, severity, passed, observed, details, run_id, evaluated_at
from quality.check_results
