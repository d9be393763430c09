-- reporting.own_portal_usage_daily
-- Daily usage of each dataset on the producer's own portals. Opendatasoft: calls from its monitoring
-- (ods-api-monitoring), split into views, downloads and API calls by Opendatasoft's documented rule, and into
-- bot and human calls by its bot flag. CKAN: page views from its tracking (views gained since the previous
-- snapshot; CKAN neither counts downloads nor flags bots: those columns are null). These figures are not
-- comparable with data.gouv.fr's, and must not be added to them: data.gouv.fr download links of harvested
-- Opendatasoft datasets point to the portal, so one download can be counted on both sides.
-- grain: portal, portal_dataset_id, date
-- columns:
--   portal VARCHAR: The portal's name in portals.yaml.
--   portal_dataset_id VARCHAR: The dataset's id on that portal.
--   dataset_id VARCHAR: Its data.gouv.fr twin, if any (reporting.dataset_twins; the surest link when several).
--   date DATE: The day.
--   views BIGINT: Page views (Opendatasoft: explore pages; CKAN: tracking views gained since the previous snapshot).
--   downloads BIGINT: Downloads (Opendatasoft exports and attachments); null for CKAN.
--   api_calls BIGINT: Other API calls (Opendatasoft); null for CKAN.
--   bot_calls BIGINT: Calls Opendatasoft flagged as bots; null for CKAN.
--   human_calls BIGINT: The other calls; null for CKAN.
with ods as (
    select
        portal,
        portal_dataset_id,
        day as date,
        sum(calls) filter (where kind = 'view') as views,
        sum(calls) filter (where kind = 'download') as downloads,
        sum(calls) filter (where kind = 'api') as api_calls,
        sum(calls) filter (where is_bot) as bot_calls,
        sum(calls) filter (where not is_bot) as human_calls
    from raw.own_portal_usage_daily
    group by portal, portal_dataset_id, day
),
twins as (
    select portal, portal_dataset_id, dataset_id
    from reporting.dataset_twins
    qualify row_number() over (
        partition by portal, portal_dataset_id
        order by case method when 'harvest_metadata' then 0 when 'resource_url' then 1 else 2 end, dataset_id
    ) = 1
),
ckan as (
    select
        portal,
        portal_dataset_id,
        snapshot_date as date,
        try_cast(payload ->> '$.tracking.total' as bigint)
            - lag(try_cast(payload ->> '$.tracking.total' as bigint))
                over (partition by portal, portal_dataset_id order by snapshot_date) as views
    from raw.own_portal_datasets
    where json_type(payload, '$.tracking') = 'OBJECT'
)
select usage.portal, usage.portal_dataset_id, twins.dataset_id, usage.date,
    coalesce(usage.views, 0)::bigint as views,
    usage.downloads::bigint as downloads,
    usage.api_calls::bigint as api_calls,
    usage.bot_calls::bigint as bot_calls,
    usage.human_calls::bigint as human_calls
from (
    select portal, portal_dataset_id, date, views, downloads, api_calls, bot_calls, human_calls from ods
    union all
    select portal, portal_dataset_id, date, views, null, null, null, null from ckan where views is not null
) as usage
left join twins using (portal, portal_dataset_id)
order by usage.portal, usage.portal_dataset_id, usage.date
