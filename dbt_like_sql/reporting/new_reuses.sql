-- reporting.new_reuses
-- Reuses that appeared on a followed dataset in the 30 days before the latest snapshot, newest first: to
-- thank their authors and share them. A reuse present at a dataset's very first snapshot counts as new only
-- if it was also published on the portal within the window (otherwise it was there before the follow-up began).
-- grain: reuse_id, dataset_id
-- columns:
--   reuse_id VARCHAR: data.gouv.fr reuse id.
--   dataset_id VARCHAR: The followed dataset it references.
--   title VARCHAR: Reuse title.
--   type VARCHAR: Kind of reuse (application, visualization, news_article, paper...).
--   url VARCHAR: The reuse's own address.
--   page_url VARCHAR: The reuse's page on the portal.
--   owner_name VARCHAR: Public name of its publisher.
--   first_seen_date DATE: First snapshot date on which the reuse appeared on that dataset.
--   days_since_first_seen BIGINT: Days between first_seen_date and the latest snapshot date.
--   in_last_7_days BOOLEAN: True when first seen in the last 7 days (else within the last 30).
with as_of as (
    select max(snapshot_date) as as_of_date from raw.dataset_snapshots
),
dataset_start as (
    select dataset_id, min(snapshot_date) as first_snapshot_date from raw.dataset_snapshots group by dataset_id
)
select
    reuses.reuse_id,
    reuses.dataset_id,
    reuses.title,
    reuses.type,
    reuses.url,
    reuses.page_url,
    reuses.owner_name,
    reuses.first_seen_date,
    as_of.as_of_date - reuses.first_seen_date as days_since_first_seen,
    as_of.as_of_date - reuses.first_seen_date < 7 as in_last_7_days
from reporting.reuses as reuses
join dataset_start using (dataset_id)
cross join as_of
where as_of.as_of_date - reuses.first_seen_date < 30
    and (
        reuses.first_seen_date > dataset_start.first_snapshot_date
        or reuses.created_at::date > as_of.as_of_date - 30
    )
order by reuses.first_seen_date desc, reuses.reuse_id
