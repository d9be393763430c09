-- reporting.reuses
-- One row per reuse and dataset it references: what the reuse is and who published it (from the latest
-- snapshot that saw it), its own audience, when it appeared on and disappeared from the dataset, and whether
-- its address still answers (link checks of raw.reuse_link_checks).
-- grain: reuse_id, dataset_id
-- columns:
--   reuse_id VARCHAR: data.gouv.fr reuse id.
--   dataset_id VARCHAR: A followed dataset the reuse references.
--   title VARCHAR: Reuse title.
--   type VARCHAR: Kind of reuse: api, application, idea, news_article, paper, post, visualization or hardware.
--   topic VARCHAR: The reuse's topic as its publisher declared it (udata topic id, e.g. transport_and_mobility).
--   url VARCHAR: The reuse's own address (the application, article or visualization).
--   page_url VARCHAR: The reuse's page on the portal.
--   owner_type VARCHAR: organization or user: who published the reuse (null when the portal does not say).
--   owner_id VARCHAR: data.gouv.fr id of that organization or user.
--   owner_name VARCHAR: Public name of that organization or user.
--   owner_slug VARCHAR: Public slug of that organization or user (its page on the portal).
--   views BIGINT: Visits of the reuse's page on the portal (cumulative, latest snapshot).
--   followers BIGINT: Users following the reuse (latest snapshot).
--   created_at TIMESTAMP WITH TIME ZONE: When the reuse was published on the portal.
--   first_seen_date DATE: First snapshot date on which the reuse appeared on that dataset.
--   last_seen_date DATE: Latest snapshot date on which the reuse appeared on that dataset.
--   removed_date DATE: First snapshot of the dataset after last_seen_date whose reuses were fetched (the reuse was gone); null while listed.
--   link_checked_at TIMESTAMP WITH TIME ZONE: When the reuse's address was last checked; null if never.
--   link_ok BOOLEAN: Whether the last check of the address succeeded.
--   link_broken BOOLEAN: True when the last 3 checks of the address all failed.
with latest as (
    select reuse_id, dataset_id, payload
    from raw.reuses
    qualify row_number() over (partition by reuse_id, dataset_id order by snapshot_date desc) = 1
),
seen as (
    select reuse_id, dataset_id, min(snapshot_date) as first_seen_date, max(snapshot_date) as last_seen_date
    from raw.reuses
    group by all
),
removed as (
    select seen.reuse_id, seen.dataset_id, min(snapshots.snapshot_date) as removed_date
    from seen
    join raw.dataset_snapshots as snapshots
        on snapshots.dataset_id = seen.dataset_id and snapshots.snapshot_date > seen.last_seen_date
    -- a day whose reuses could not be fetched tells nothing about them
    anti join raw.fetch_failures as failures
        on failures.subject = snapshots.dataset_id
        and failures.snapshot_date = snapshots.snapshot_date
        and failures.part = 'reuses'
    group by all
),
checks as (
    select
        url,
        max(checked_at) as link_checked_at,
        arg_max(ok, checked_at) as link_ok,
        count(*) filter (where recent <= 3 and not ok) = 3 as link_broken
    from (
        select url, checked_at, ok, row_number() over (partition by url order by checked_at desc) as recent
        from raw.reuse_link_checks
    )
    group by url
)
select
    latest.reuse_id,
    latest.dataset_id,
    latest.payload ->> '$.title' as title,
    latest.payload ->> '$.type' as type,
    latest.payload ->> '$.topic' as topic,
    latest.payload ->> '$.url' as url,
    latest.payload ->> '$.page' as page_url,
    case
        when latest.payload ->> '$.organization.id' is not null then 'organization'
        when latest.payload ->> '$.owner.id' is not null then 'user'
    end as owner_type,
    coalesce(latest.payload ->> '$.organization.id', latest.payload ->> '$.owner.id') as owner_id,
    coalesce(
        latest.payload ->> '$.organization.name',
        nullif(trim(concat_ws(' ', latest.payload ->> '$.owner.first_name', latest.payload ->> '$.owner.last_name')), '')
    ) as owner_name,
    coalesce(latest.payload ->> '$.organization.slug', latest.payload ->> '$.owner.slug') as owner_slug,
    try_cast(latest.payload ->> '$.metrics.views' as bigint) as views,
    try_cast(latest.payload ->> '$.metrics.followers' as bigint) as followers,
    try_cast(latest.payload ->> '$.created_at' as timestamptz) as created_at,
    seen.first_seen_date,
    seen.last_seen_date,
    removed.removed_date,
    checks.link_checked_at,
    checks.link_ok,
    coalesce(checks.link_broken, false) as link_broken
from latest
join seen using (reuse_id, dataset_id)
left join removed using (reuse_id, dataset_id)
left join checks on checks.url = trim(latest.payload ->> '$.url')
