-- reporting.interview_candidates
-- For each followed dataset, the (up to) five reusers to survey or interview first, with why: ranked by
-- their engagement with that dataset (same formula as reporting.reusers.engagement_score, on that dataset's
-- activity only). Public profile information only.
-- grain: dataset_id, rank
-- columns:
--   dataset_id VARCHAR: The dataset.
--   rank BIGINT: 1 = the most engaged reuser of that dataset.
--   reuser_type VARCHAR: user or organization.
--   reuser_id VARCHAR: data.gouv.fr id of the reuser.
--   name VARCHAR: Public name.
--   slug VARCHAR: Public slug (their page on the portal).
--   dataset_score DOUBLE: Engagement with this dataset.
--   reuses_published BIGINT: Reuses of the dataset they published.
--   reuse_types VARCHAR: Types of those reuses (udata codes, comma-separated), null without reuse.
--   discussions_opened BIGINT: Discussions they opened on the dataset.
--   replies_posted BIGINT: Messages they posted in the dataset's discussions after the opening one.
--   last_activity_at TIMESTAMP WITH TIME ZONE: Their latest reuse, discussion or reply on the dataset.
--   why VARCHAR: What they did with the dataset, in English words (the digest writes it in the reader's language).
with as_of as (
    select max(snapshot_date) as as_of_date from raw.dataset_snapshots
),
per_dataset as (
    select
        dataset_id,
        reuser_type,
        reuser_id,
        arg_max(name, active_at) as name,
        arg_max(slug, active_at) as slug,
        count(*) filter (where kind = 'reuse') as reuses,
        string_agg(distinct reuse_type, ', ' order by reuse_type) filter (where kind = 'reuse') as reuse_types,
        count(*) filter (where kind = 'discussion') as discussions,
        count(*) filter (where kind = 'message') as messages,
        max(active_at) as last_activity_at,
        round(
            (5 * reuses + 3 + 2 * discussions + messages)
            * case when any_value(as_of.as_of_date) - max(active_at)::date > 365 then 0.5 else 1 end,
            1
        )::double as dataset_score
    from reporting.reuser_activity as activity
    cross join as_of
    group by dataset_id, reuser_type, reuser_id
)
select
    dataset_id,
    row_number() over (partition by dataset_id order by dataset_score desc, last_activity_at desc, reuser_id) as rank,
    reuser_type,
    reuser_id,
    name,
    slug,
    dataset_score,
    reuses as reuses_published,
    reuse_types,
    discussions as discussions_opened,
    messages as replies_posted,
    last_activity_at,
    concat_ws(
        '; ',
        case when reuses > 0 then 'published ' || reuses || ' reuse(s) (' || reuse_types || ')' end,
        case when discussions > 0 then 'opened ' || discussions || ' discussion(s)' end,
        case when messages > 0 then 'posted ' || messages || ' repl' || case when messages = 1 then 'y' else 'ies' end end,
        'last active ' || strftime(last_activity_at, '%Y-%m-%d')
    ) as why
from per_dataset
qualify rank <= 5
order by dataset_id, rank
