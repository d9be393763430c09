-- reporting.discussions_awaiting_answer
-- The producer's to-do list: every open discussion whose last message comes from a reuser, oldest wait
-- first (discussions removed from the portal, and those of gone datasets, are left out). waiting_since is the time of the reuser's last message; waiting_days counts from it to the date of
-- the latest snapshot (the day the list is as of).
-- grain: discussion_id
-- columns:
--   discussion_id VARCHAR: data.gouv.fr discussion id.
--   dataset_id VARCHAR: The dataset the discussion is about.
--   organization_id VARCHAR: The dataset's organization (the producer).
--   dataset_title VARCHAR: Title of the dataset.
--   title VARCHAR: Discussion title.
--   url VARCHAR: The discussion on the portal (answer it there).
--   asker VARCHAR: Public name of the user who opened the discussion.
--   opened_at TIMESTAMP WITH TIME ZONE: When the discussion was opened.
--   waiting_since TIMESTAMP WITH TIME ZONE: When the reuser's last message was posted.
--   waiting_days BIGINT: Whole days between waiting_since and the latest snapshot date.
--   theme VARCHAR: What the discussion is about: accessibility, freshness, reliability, usability or other.
--   theme_needs_review BOOLEAN: The classifier was unsure of the theme: a person should check it.
with as_of as (
    select max(snapshot_date) as as_of_date from raw.dataset_snapshots
),
last_reuser_message as (
    select discussion_id, max(posted_at) as waiting_since
    from staging.discussion_messages
    where not is_producer
    group by discussion_id
)
select
    discussions.discussion_id,
    discussions.dataset_id,
    discussions.organization_id,
    datasets.title as dataset_title,
    discussions.title,
    discussions.url,
    discussions.asker,
    discussions.created_at as opened_at,
    last_reuser_message.waiting_since,
    date_diff('day', last_reuser_message.waiting_since::date, as_of.as_of_date) as waiting_days,
    discussions.theme,
    discussions.theme_needs_review
from reporting.discussions as discussions
join last_reuser_message using (discussion_id)
left join reporting.datasets as datasets using (dataset_id)
cross join as_of
where discussions.status = 'awaiting_producer'
    and discussions.removed_date is null
    and coalesce(datasets.status, 'active') <> 'gone'
order by last_reuser_message.waiting_since, discussions.discussion_id
