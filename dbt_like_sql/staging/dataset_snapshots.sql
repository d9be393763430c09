-- staging.dataset_snapshots
-- The portal's answer for each followed dataset on each snapshot date, typed: the dataset's cumulative
-- counters and descriptive fields when it answered 200, or only the 404/410 status of a gone dataset.
-- grain: dataset_id, snapshot_date
-- columns:
--   dataset_id VARCHAR: data.gouv.fr dataset id.
--   snapshot_date DATE: The run's logical date on which the portal was read.
--   http_status INTEGER: 200 for a live dataset, 404 (unknown or private) or 410 (deleted) for a gone one.
--   title VARCHAR: Dataset title.
--   slug VARCHAR: Dataset slug (the last part of its page URL).
--   organization_id VARCHAR: Id of the organization publishing the dataset (null for a user's dataset).
--   organization_name VARCHAR: Name of that organization.
--   organization_slug VARCHAR: Slug of that organization (the last part of its page URL).
--   owner_id VARCHAR: Id of the user publishing the dataset when no organization does.
--   page_url VARCHAR: The dataset's page on the portal.
--   created_at TIMESTAMP WITH TIME ZONE: When the dataset was created on the portal.
--   last_update TIMESTAMP WITH TIME ZONE: When its data (resources) last changed, as the portal computes it.
--   archived_at TIMESTAMP WITH TIME ZONE: When the dataset was archived; null when it is not archived.
--   frequency VARCHAR: Declared update frequency (udata id such as monthly, daily, irregular).
--   views BIGINT: Cumulative visits of the dataset page (metrics.views).
--   downloads BIGINT: Cumulative downloads of all its resources (metrics.resources_downloads).
--   followers BIGINT: Users following the dataset.
--   reuses BIGINT: Visible reuses referencing the dataset.
--   discussions BIGINT: Discussions opened on the dataset.
select
    dataset_id,
    snapshot_date,
    http_status,
    payload ->> '$.title' as title,
    payload ->> '$.slug' as slug,
    payload ->> '$.organization.id' as organization_id,
    payload ->> '$.organization.name' as organization_name,
    payload ->> '$.organization.slug' as organization_slug,
    payload ->> '$.owner.id' as owner_id,
    payload ->> '$.page' as page_url,
    try_cast(payload ->> '$.created_at' as timestamptz) as created_at,
    try_cast(payload ->> '$.last_update' as timestamptz) as last_update,
    try_cast(payload ->> '$.archived' as timestamptz) as archived_at,
    payload ->> '$.frequency' as frequency,
    coalesce(try_cast(payload ->> '$.metrics.views' as bigint), 0) as views,
    coalesce(try_cast(payload ->> '$.metrics.resources_downloads' as bigint), 0) as downloads,
    coalesce(try_cast(payload ->> '$.metrics.followers' as bigint), 0) as followers,
    coalesce(try_cast(payload ->> '$.metrics.reuses' as bigint), 0) as reuses,
    coalesce(try_cast(payload ->> '$.metrics.discussions' as bigint), 0) as discussions
from raw.dataset_snapshots
