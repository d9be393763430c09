-- reporting.datasets
-- One row per followed dataset, gone ones included: what it is, who publishes it, and whether it is
-- still live on the portal, from its latest snapshot.
-- grain: dataset_id
-- columns:
--   dataset_id VARCHAR: data.gouv.fr dataset id.
--   organization_id VARCHAR: Id of the organization publishing the dataset (from its latest live snapshot).
--   organization_name VARCHAR: Name of that organization.
--   organization_slug VARCHAR: Slug of that organization (the last part of its page URL).
--   owner_id VARCHAR: Id of the user publishing the dataset when no organization does.
--   title VARCHAR: Dataset title (from its latest live snapshot).
--   slug VARCHAR: Dataset slug.
--   page_url VARCHAR: The dataset's page on the portal.
--   created_at TIMESTAMP WITH TIME ZONE: When the dataset was created on the portal.
--   last_update TIMESTAMP WITH TIME ZONE: When its data last changed, as the portal computes it.
--   frequency VARCHAR: Declared update frequency (udata id).
--   status VARCHAR: active, archived, or gone (the latest snapshot answered 404 or 410).
--   gone_since DATE: First snapshot date of the current run of 404/410 answers; null unless gone.
--   first_snapshot_date DATE: First snapshot date of the dataset.
--   last_snapshot_date DATE: Latest snapshot date of the dataset.
with live as (
    select *
    from staging.dataset_snapshots
    where http_status = 200
    qualify row_number() over (partition by dataset_id order by snapshot_date desc) = 1
),
bounds as (
    select
        dataset_id,
        min(snapshot_date) as first_snapshot_date,
        max(snapshot_date) as last_snapshot_date,
        arg_max(http_status, snapshot_date) as latest_status
    from staging.dataset_snapshots
    group by dataset_id
),
gone as (
    select snapshots.dataset_id, min(snapshots.snapshot_date) as gone_since
    from staging.dataset_snapshots as snapshots
    left join live using (dataset_id)
    where snapshots.http_status <> 200
        and (live.snapshot_date is null or snapshots.snapshot_date > live.snapshot_date)
    group by snapshots.dataset_id
)
select
    bounds.dataset_id,
    live.organization_id,
    live.organization_name,
    live.organization_slug,
    live.owner_id,
    live.title,
    live.slug,
    live.page_url,
    live.created_at,
    live.last_update,
    live.frequency,
    case
        when bounds.latest_status <> 200 then 'gone'
        when live.archived_at is not null then 'archived'
        else 'active'
    end as status,
    case when bounds.latest_status <> 200 then gone.gone_since end as gone_since,
    bounds.first_snapshot_date,
    bounds.last_snapshot_date
from bounds
left join live using (dataset_id)
left join gone using (dataset_id)
