-- reporting.reuses
-- One row per reuse and dataset it references: what the reuse is (from the latest snapshot that saw it)
-- and when it appeared on and was last seen on that dataset.
-- grain: reuse_id, dataset_id
-- columns:
--   reuse_id VARCHAR: data.gouv.fr reuse id.
--   dataset_id VARCHAR: A followed dataset the reuse references.
--   title VARCHAR: Reuse title.
--   type VARCHAR: Kind of reuse: api, application, idea, news_article, paper, post, visualization or hardware.
--   url VARCHAR: The reuse's own address (the application, article or visualization).
--   page_url VARCHAR: The reuse's page on the portal.
--   created_at TIMESTAMP WITH TIME ZONE: When the reuse was published on the portal.
--   first_seen_date DATE: First snapshot date on which the reuse appeared on that dataset.
--   last_seen_date DATE: Latest snapshot date on which the reuse appeared on that dataset.
select
    reuse_id,
    dataset_id,
    arg_max(payload ->> '$.title', snapshot_date) as title,
    arg_max(payload ->> '$.type', snapshot_date) as type,
    arg_max(payload ->> '$.url', snapshot_date) as url,
    arg_max(payload ->> '$.page', snapshot_date) as page_url,
    arg_max(try_cast(payload ->> '$.created_at' as timestamptz), snapshot_date) as created_at,
    min(snapshot_date) as first_seen_date,
    max(snapshot_date) as last_seen_date
from raw.reuses
group by reuse_id, dataset_id
