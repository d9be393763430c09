-- reporting.response_times
-- How fast and how often the producer answers, per organization, dataset and month (of the discussions
-- opened that month). An answer is the first message after the opening one posted by a member of the
-- dataset's organization or in its name: the rule of data.gouv.fr's own "legitimate answer delay" KPI, whose
-- figure (mean of the days to the first answer, each capped at 30) is mean_days_to_first_answer_capped. The
-- open backlog counts, at the end of the month, the discussions opened by then that were neither closed nor
-- answered by then. Months run from the dataset's first discussion to the month of the latest snapshot.
-- Days and shares are rounded to 4 decimals.
-- grain: organization_id, dataset_id, month
-- columns:
--   organization_id VARCHAR: The producer.
--   dataset_id VARCHAR: The dataset.
--   month VARCHAR: The month, YYYY-MM.
--   discussions_opened BIGINT: Discussions opened that month.
--   answered BIGINT: Of those, discussions the producer answered (at any time since).
--   answered_share DOUBLE: answered / discussions_opened; null when none was opened.
--   median_days_to_first_answer DOUBLE: Median days from opening to the first producer answer (answered ones).
--   p90_days_to_first_answer DOUBLE: 90th percentile of the same.
--   mean_days_to_first_answer_capped DOUBLE: Mean of the days to the first answer, each capped at 30 (answered ones; data.gouv.fr KPI).
--   answered_within_7_days_share DOUBLE: Share of the month's discussions answered within 7 days of opening.
--   open_backlog_at_month_end BIGINT: Discussions opened by the month's end, neither closed nor answered by then.
with as_of as (
    select max(snapshot_date) as as_of_date from raw.dataset_snapshots
),
threads as (
    select
        organization_id,
        dataset_id,
        created_at,
        closed_at,
        first_response_at,
        date_diff('second', created_at, first_response_at) / 86400.0 as days_to_answer
    from reporting.discussions
    where organization_id is not null
),
months as (
    select threads.organization_id, threads.dataset_id, month_start
    from (
        select organization_id, dataset_id, date_trunc('month', min(created_at))::date as first_month
        from threads group by all
    ) as threads
    cross join as_of,
    lateral (
        select unnest(generate_series(threads.first_month, date_trunc('month', as_of.as_of_date)::date, interval 1 month))
            as month_start
    )
),
opened as (
    select
        organization_id,
        dataset_id,
        date_trunc('month', created_at)::date as month_start,
        count(*) as discussions_opened,
        count(first_response_at) as answered,
        round(median(days_to_answer), 4) as median_days_to_first_answer,
        round(quantile_cont(days_to_answer, 0.9), 4) as p90_days_to_first_answer,
        round(avg(least(days_to_answer, 30)) filter (where days_to_answer is not null), 4)
            as mean_days_to_first_answer_capped,
        round(count(*) filter (where days_to_answer <= 7) / count(*), 4) as answered_within_7_days_share
    from threads
    group by all
),
backlog as (
    select months.organization_id, months.dataset_id, months.month_start, count(threads.created_at) as open_backlog
    from months
    left join threads
        on threads.dataset_id = months.dataset_id
        and threads.organization_id = months.organization_id
        and threads.created_at < months.month_start + interval 1 month
        and coalesce(threads.closed_at, timestamptz '9999-12-31') >= months.month_start + interval 1 month
        and coalesce(threads.first_response_at, timestamptz '9999-12-31') >= months.month_start + interval 1 month
    group by all
)
select
    months.organization_id,
    months.dataset_id,
    strftime(months.month_start, '%Y-%m') as month,
    coalesce(opened.discussions_opened, 0) as discussions_opened,
    coalesce(opened.answered, 0) as answered,
    round(opened.answered / opened.discussions_opened, 4) as answered_share,
    opened.median_days_to_first_answer,
    opened.p90_days_to_first_answer,
    opened.mean_days_to_first_answer_capped,
    opened.answered_within_7_days_share,
    backlog.open_backlog as open_backlog_at_month_end
from months
left join opened using (organization_id, dataset_id, month_start)
left join backlog using (organization_id, dataset_id, month_start)
order by months.organization_id, months.dataset_id, month
