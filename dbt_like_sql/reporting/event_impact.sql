-- reporting.event_impact
-- What each community event changed on each dataset it concerned: views and downloads gained, discussions
-- opened and reuses published in the 14 days from the event (its day included) against the 14 days before.
-- Views and downloads come from the daily snapshots (a delta counts on its snapshot date): the days_observed
-- columns say how many snapshot dates each window holds, so a window the follow-up did not cover is visible.
-- grain: event_date, title, dataset_id
-- columns:
--   event_date DATE: When the event took place.
--   title VARCHAR: The event's title.
--   kind VARCHAR: workshop, webinar, hackathon, newsletter...
--   dataset_id VARCHAR: A dataset the event was about.
--   views_before BIGINT: Views gained in the 14 days before the event.
--   views_after BIGINT: Views gained in the 14 days from the event.
--   downloads_before BIGINT: Downloads gained in the 14 days before.
--   downloads_after BIGINT: Downloads gained in the 14 days from the event.
--   discussions_before BIGINT: Discussions opened in the 14 days before.
--   discussions_after BIGINT: Discussions opened in the 14 days from the event.
--   reuses_before BIGINT: Reuses published (or first seen) in the 14 days before.
--   reuses_after BIGINT: Reuses published (or first seen) in the 14 days from the event.
--   days_observed_before BIGINT: Snapshot dates in the window before (14 = fully observed).
--   days_observed_after BIGINT: Snapshot dates in the window after.
--   views_change_pct DOUBLE: views_after / views_before - 1, in percent; null when views_before is 0 or unknown.
with events as (
    select event_date, title, min(kind) as kind, dataset_id from raw.community_events group by all
),
daily as (
    select
        events.event_date, events.title, events.dataset_id,
        sum(usage.views_delta) filter (where usage.date < events.event_date) as views_before,
        sum(usage.views_delta) filter (where usage.date >= events.event_date) as views_after,
        sum(usage.downloads_delta) filter (where usage.date < events.event_date) as downloads_before,
        sum(usage.downloads_delta) filter (where usage.date >= events.event_date) as downloads_after,
        count(usage.views_delta) filter (where usage.date < events.event_date) as days_observed_before,
        count(usage.views_delta) filter (where usage.date >= events.event_date) as days_observed_after
    from events
    left join reporting.dataset_usage_daily as usage
        on usage.dataset_id = events.dataset_id
        and usage.date >= events.event_date - 14 and usage.date < events.event_date + 14
    group by all
),
discussions as (
    select
        events.event_date, events.title, events.dataset_id,
        count(*) filter (where d.created_at::date < events.event_date) as discussions_before,
        count(*) filter (where d.created_at::date >= events.event_date) as discussions_after
    from events
    join reporting.discussions as d
        on d.dataset_id = events.dataset_id
        and d.created_at::date >= events.event_date - 14 and d.created_at::date < events.event_date + 14
    group by all
),
reuses as (
    select
        events.event_date, events.title, events.dataset_id,
        count(*) filter (where r.published < events.event_date) as reuses_before,
        count(*) filter (where r.published >= events.event_date) as reuses_after
    from events
    join (
        select dataset_id, coalesce(created_at::date, first_seen_date) as published from reporting.reuses
    ) as r
        on r.dataset_id = events.dataset_id
        and r.published >= events.event_date - 14 and r.published < events.event_date + 14
    group by all
)
select
    events.event_date,
    events.title,
    events.kind,
    events.dataset_id,
    daily.views_before::bigint as views_before,
    daily.views_after::bigint as views_after,
    daily.downloads_before::bigint as downloads_before,
    daily.downloads_after::bigint as downloads_after,
    coalesce(discussions.discussions_before, 0) as discussions_before,
    coalesce(discussions.discussions_after, 0) as discussions_after,
    coalesce(reuses.reuses_before, 0) as reuses_before,
    coalesce(reuses.reuses_after, 0) as reuses_after,
    daily.days_observed_before,
    daily.days_observed_after,
    round(100.0 * daily.views_after / nullif(daily.views_before, 0) - 100, 1) as views_change_pct
from events
left join daily using (event_date, title, dataset_id)
left join discussions using (event_date, title, dataset_id)
left join reuses using (event_date, title, dataset_id)
order by events.event_date, events.title, events.dataset_id
