-- reporting.followed_entries
-- One row per organization or dataset named in USAGE_ORGANIZATIONS or USAGE_DATASETS: what the portal says of
-- it as of its latest snapshot. An entry whose id or slug no longer answers (404/410) does not stop the daily
-- run: it is followed by the id it resolved to before when that id still answers (renamed), else recorded as
-- gone, and every other dataset is snapshotted the same day. Fix the setting for anything not active.
-- grain: kind, configured_as
-- columns:
--   kind VARCHAR: organization or dataset.
--   configured_as VARCHAR: The id or slug as written in the setting.
--   resolved_id VARCHAR: The data.gouv.fr id it resolves to, or resolved to when it last answered; null if never.
--   status VARCHAR: active, renamed (its key no longer answers, its id does), gone (404/410) or unreachable.
--   http_status INTEGER: What the configured key answered on the latest snapshot (null without an answer).
--   detail VARCHAR: What happened, in words; empty when active.
--   first_snapshot_date DATE: First snapshot date that asked about the entry.
--   last_snapshot_date DATE: Latest snapshot date that asked about it.
--   gone_since DATE: First snapshot date since which its key has not answered; null while active.
--   still_configured BOOLEAN: Whether the latest snapshot of all still had it in the settings.
with latest as (
    select *
    from raw.followed_entries
    qualify row_number() over (partition by kind, configured_as order by snapshot_date desc) = 1
),
bounds as (
    select kind, configured_as, min(snapshot_date) as first_snapshot_date, max(snapshot_date) as last_snapshot_date
    from raw.followed_entries
    group by kind, configured_as
),
last_active as (
    select kind, configured_as, max(snapshot_date) as last_active_date
    from raw.followed_entries
    where status = 'active'
    group by kind, configured_as
),
not_answering as (
    select entries.kind, entries.configured_as, min(entries.snapshot_date) as gone_since
    from raw.followed_entries as entries
    left join last_active using (kind, configured_as)
    where entries.status <> 'active'
        and (last_active.last_active_date is null or entries.snapshot_date > last_active.last_active_date)
    group by entries.kind, entries.configured_as
)
select
    latest.kind,
    latest.configured_as,
    latest.resolved_id,
    latest.status,
    latest.http_status,
    coalesce(latest.detail, '') as detail,
    bounds.first_snapshot_date,
    bounds.last_snapshot_date,
    case when latest.status <> 'active' then not_answering.gone_since end as gone_since,
    bounds.last_snapshot_date = (select max(snapshot_date) from raw.followed_entries) as still_configured
from latest
join bounds using (kind, configured_as)
left join not_answering using (kind, configured_as)
