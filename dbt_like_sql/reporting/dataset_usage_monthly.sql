-- reporting.dataset_usage_monthly
-- One row per dataset and month: visits and downloads from the data.gouv.fr metrics API, as its latest
-- fetch said (past months are stable; the current month is partial). A dataset that changed organization
-- has one row per organization for a month: each is taken from its latest fetch, then they are summed. A
-- null value counts as 0.
-- grain: dataset_id, month
-- columns:
--   dataset_id VARCHAR: data.gouv.fr dataset id.
--   month VARCHAR: The month, YYYY-MM.
--   visits BIGINT: Visits of the dataset page during the month.
--   downloads BIGINT: Downloads of the dataset's resources during the month.
--   is_complete BOOLEAN: False for the month of the fetch itself, still being counted.
--   fetched_on DATE: Snapshot date of the fetch these figures come from.
with latest as (
    select dataset_id, metric_month, snapshot_date, payload
    from raw.metrics_monthly
    qualify snapshot_date = max(snapshot_date) over (
        partition by dataset_id, metric_month, payload ->> '$.organization_id'
    )
)
select
    dataset_id,
    metric_month as month,
    sum(coalesce(try_cast(payload ->> '$.monthly_visit' as bigint), 0))::bigint as visits,
    sum(coalesce(try_cast(payload ->> '$.monthly_download_resource' as bigint), 0))::bigint as downloads,
    metric_month < strftime(max(snapshot_date), '%Y-%m') as is_complete,
    max(snapshot_date) as fetched_on
from latest
group by dataset_id, metric_month
