-- reporting.discussions
-- One row per discussion on a followed dataset (as of the latest snapshot that saw it), with where the
-- conversation stands. status: closed when the discussion is closed; else answered when its last message
-- comes from the producer (a member of the dataset's organization, or a post in its name); else
-- awaiting_producer.
-- grain: discussion_id
-- columns:
--   discussion_id VARCHAR: data.gouv.fr discussion id.
--   dataset_id VARCHAR: The dataset the discussion is about.
--   organization_id VARCHAR: The dataset's organization (the producer).
--   title VARCHAR: Discussion title.
--   url VARCHAR: The discussion on the portal's dataset page.
--   opened_by VARCHAR: Public slug of the user who opened the discussion.
--   asker VARCHAR: Public name of the user who opened the discussion.
--   created_at TIMESTAMP WITH TIME ZONE: When the discussion was opened.
--   closed_at TIMESTAMP WITH TIME ZONE: When it was closed; null while open.
--   n_messages BIGINT: Messages in the thread, the opening one included.
--   last_message_at TIMESTAMP WITH TIME ZONE: When the latest message was posted.
--   first_response_at TIMESTAMP WITH TIME ZONE: First producer message after the opening one; null if the producer never answered.
--   status VARCHAR: closed, answered or awaiting_producer (see the table description).
--   theme VARCHAR: What it is about: accessibility, freshness, reliability, usability or other (see staging.discussion_themes).
--   theme_evidence VARCHAR[]: Words of the discussion that the lexicon ties to that theme (may be empty).
--   theme_confidence DOUBLE: The classifier's probability of that theme, 0 to 1 (null when the producer corrected it or the lexicon decided).
--   theme_source VARCHAR: Who decided the theme: model (the trained classifier), lexicon (fallback) or correction (the producer, theme_corrections.csv).
--   theme_needs_review BOOLEAN: The classifier was unsure (confidence below its threshold): a person should check the theme.
--   removed_date DATE: First snapshot of the dataset whose discussions were fetched without this one (deleted or moderated); null while listed.
with latest as (
    select dataset_id, discussion_id, payload, snapshot_date as last_seen_date
    from raw.discussions
    qualify row_number() over (partition by discussion_id order by snapshot_date desc) = 1
),
removed as (
    select latest.discussion_id, min(snapshots.snapshot_date) as removed_date
    from latest
    join raw.dataset_snapshots as snapshots
        on snapshots.dataset_id = latest.dataset_id
        and snapshots.http_status = 200
        and snapshots.snapshot_date > latest.last_seen_date
    -- a day whose discussions could not be fetched tells nothing about them
    anti join raw.fetch_failures as failures
        on failures.subject = snapshots.dataset_id
        and failures.snapshot_date = snapshots.snapshot_date
        and failures.part = 'discussions'
    group by latest.discussion_id
),
threads as (
    select
        discussion_id,
        count(*) as n_messages,
        max(posted_at) as last_message_at,
        min(posted_at) filter (where is_producer and position > 0) as first_response_at,
        arg_max(is_producer, position) as last_by_producer
    from staging.discussion_messages
    group by discussion_id
)
select
    latest.discussion_id,
    latest.dataset_id,
    datasets.organization_id,
    latest.payload ->> '$.title' as title,
    latest.payload ->> '$.self_web_url' as url,
    latest.payload ->> '$.user.slug' as opened_by,
    nullif(trim(concat_ws(' ', latest.payload ->> '$.user.first_name', latest.payload ->> '$.user.last_name')), '')
        as asker,
    try_cast(latest.payload ->> '$.created' as timestamptz) as created_at,
    try_cast(latest.payload ->> '$.closed' as timestamptz) as closed_at,
    coalesce(threads.n_messages, 0) as n_messages,
    threads.last_message_at,
    threads.first_response_at,
    case
        when latest.payload ->> '$.closed' is not null then 'closed'
        when threads.last_by_producer then 'answered'
        else 'awaiting_producer'
    end as status,
    coalesce(themes.theme, 'other') as theme,
    coalesce(themes.evidence, []) as theme_evidence,
    themes.theme_confidence,
    coalesce(themes.theme_source, 'lexicon') as theme_source,
    coalesce(themes.needs_review, false) as theme_needs_review,
    removed.removed_date
from latest
left join threads using (discussion_id)
left join reporting.datasets as datasets using (dataset_id)
left join removed using (discussion_id)
left join staging.discussion_themes as themes using (discussion_id)
