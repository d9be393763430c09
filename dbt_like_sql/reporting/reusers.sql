-- reporting.reusers
-- One row per reuser of the followed datasets — a user, or an organization when it published a reuse or a
-- message in its own name: what they did with the data, from public portal activity only (never an e-mail).
-- Built on reporting.reuser_activity (the producer's own members are not reusers). engagement_score =
-- 5 × reuses_published + 3 × datasets_engaged + 2 × discussions_opened + 1 × messages_posted, halved when the
-- last activity is more than 365 days before the latest snapshot.
-- grain: reuser_type, reuser_id
-- columns:
--   reuser_type VARCHAR: user or organization.
--   reuser_id VARCHAR: data.gouv.fr id of the user or organization.
--   name VARCHAR: Public name.
--   slug VARCHAR: Public slug (their page on the portal: /users/<slug> or /organizations/<slug>).
--   datasets_reused BIGINT: Followed datasets referenced by their reuses.
--   reuses_published BIGINT: Their reuses referencing followed datasets.
--   discussions_opened BIGINT: Discussions they opened on followed datasets.
--   messages_posted BIGINT: Replies they posted in those discussions (opening messages not counted).
--   datasets_engaged BIGINT: Followed datasets they reused or discussed.
--   first_activity_at TIMESTAMP WITH TIME ZONE: Their first reuse or message on a followed dataset.
--   last_activity_at TIMESTAMP WITH TIME ZONE: Their latest reuse or message on a followed dataset.
--   engagement_score DOUBLE: See the table description.
with as_of as (
    select max(snapshot_date) as as_of_date from raw.dataset_snapshots
)
select
    reuser_type,
    reuser_id,
    arg_max(name, active_at) as name,
    arg_max(slug, active_at) as slug,
    count(distinct dataset_id) filter (where kind = 'reuse') as datasets_reused,
    count(distinct object_id) filter (where kind = 'reuse') as reuses_published,
    count(*) filter (where kind = 'discussion') as discussions_opened,
    count(*) filter (where kind = 'message') as messages_posted,
    count(distinct dataset_id) as datasets_engaged,
    min(active_at) as first_activity_at,
    max(active_at) as last_activity_at,
    round(
        (5 * reuses_published + 3 * datasets_engaged + 2 * discussions_opened + messages_posted)
        * case when any_value(as_of.as_of_date) - max(active_at)::date > 365 then 0.5 else 1 end,
        1
    )::double as engagement_score
from reporting.reuser_activity as activity
cross join as_of
group by reuser_type, reuser_id
order by engagement_score desc, reuser_id
