-- reporting.combined_usage
-- data.gouv.fr and the producer's own portal side by side, per dataset and month: data.gouv.fr visits and
-- downloads (metrics API) next to the twin's views, downloads and API calls on the own portal. Side by side,
-- never summed: data.gouv.fr download links of harvested Opendatasoft datasets point to the portal, so one
-- download can be counted on both sides, and each side counts views its own way.
-- grain: dataset_id, month
-- columns:
--   dataset_id VARCHAR: data.gouv.fr dataset id (one with a twin on an own portal).
--   month VARCHAR: The month, YYYY-MM.
--   dgf_visits BIGINT: Visits of the dataset page on data.gouv.fr (metrics API); null when not fetched.
--   dgf_downloads BIGINT: Downloads of its resources on data.gouv.fr (metrics API).
--   portal_views BIGINT: Views of the twin on the own portal(s) that month.
--   portal_downloads BIGINT: Downloads of the twin on the own portal(s) (Opendatasoft only).
--   portal_api_calls BIGINT: API calls on the twin (Opendatasoft only).
--   bot_share DOUBLE: Share of the twin's calls flagged as bots (Opendatasoft only), rounded to 4 decimals.
with portal as (
    select
        dataset_id,
        strftime(date, '%Y-%m') as month,
        sum(views) as portal_views,
        sum(downloads) as portal_downloads,
        sum(api_calls) as portal_api_calls,
        round(sum(bot_calls) / nullif(sum(bot_calls) + sum(human_calls), 0), 4) as bot_share
    from reporting.own_portal_usage_daily
    where dataset_id is not null
    group by all
)
select
    portal.dataset_id,
    portal.month,
    dgf.visits as dgf_visits,
    dgf.downloads as dgf_downloads,
    portal.portal_views::bigint as portal_views,
    portal.portal_downloads::bigint as portal_downloads,
    portal.portal_api_calls::bigint as portal_api_calls,
    portal.bot_share
from portal
left join reporting.dataset_usage_monthly as dgf on dgf.dataset_id = portal.dataset_id and dgf.month = portal.month
order by portal.dataset_id, portal.month
