-- reporting.dataset_usage_daily
-- One row per live dataset and snapshot date: the portal's cumulative counters as read that day, and how
-- much views and downloads grew since the dataset's previous snapshot. Counters of past days cannot be
-- fetched later: a day without a run has no row, and the next delta covers the whole gap.
-- grain: dataset_id, date
-- columns:
--   dataset_id VARCHAR: data.gouv.fr dataset id.
--   organization_id VARCHAR: Id of the organization publishing the dataset that day.
--   date DATE: Snapshot date (the run's logical date).
--   views BIGINT: Cumulative visits of the dataset page.
--   downloads BIGINT: Cumulative downloads of all its resources.
--   followers BIGINT: Users following the dataset.
--   reuses BIGINT: Visible reuses referencing the dataset.
--   discussions BIGINT: Discussions opened on the dataset.
--   views_delta BIGINT: views minus views at the dataset's previous snapshot; null on its first snapshot.
--   downloads_delta BIGINT: downloads minus downloads at the previous snapshot; null on its first snapshot.
--   days_since_previous BIGINT: Days between this snapshot and the previous one; null on the first.
select
    dataset_id,
    organization_id,
    snapshot_date as date,
    views,
    downloads,
    followers,
    reuses,
    discussions,
    views - lag(views) over by_date as views_delta,
    downloads - lag(downloads) over by_date as downloads_delta,
    snapshot_date - lag(snapshot_date) over by_date as days_since_previous
from staging.dataset_snapshots
where http_status = 200
window by_date as (partition by dataset_id order by snapshot_date)
