-- reporting.resource_downloads_daily
-- One row per resource (file or API) of a live dataset and snapshot date: its cumulative downloads as
-- the portal counts them (udata calls this counter `views`; it counts downloads), and the growth since
-- the resource's previous snapshot.
-- grain: resource_id, dataset_id, date
-- columns:
--   resource_id VARCHAR: data.gouv.fr resource id.
--   dataset_id VARCHAR: The dataset holding the resource.
--   date DATE: Snapshot date.
--   title VARCHAR: Resource title.
--   format VARCHAR: Declared format (csv, json, zip...).
--   resource_type VARCHAR: main, documentation, update, api, code or other.
--   downloads BIGINT: Cumulative downloads of the resource.
--   downloads_delta BIGINT: downloads minus downloads at the resource's previous snapshot; null on its first.
with resources as (
    select
        dataset_id,
        snapshot_date,
        unnest(payload -> '$.resources[*]') as resource
    from raw.dataset_snapshots
    where http_status = 200
)
select
    resource ->> '$.id' as resource_id,
    dataset_id,
    snapshot_date as date,
    resource ->> '$.title' as title,
    resource ->> '$.format' as format,
    resource ->> '$.type' as resource_type,
    coalesce(try_cast(resource ->> '$.metrics.views' as bigint), 0) as downloads,
    downloads - lag(downloads) over (partition by resource_id, dataset_id order by snapshot_date) as downloads_delta
from resources
