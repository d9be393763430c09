-- staging.discussion_messages
-- Every message of every discussion on a followed dataset, as of the latest snapshot that saw the
-- discussion, with whether the producer wrote it: a member of the dataset's organization, a post made in
-- the name of that organization, or the user who owns the dataset when no organization publishes it.
-- grain: discussion_id, position
-- columns:
--   discussion_id VARCHAR: data.gouv.fr discussion id.
--   dataset_id VARCHAR: The dataset the discussion is about.
--   organization_id VARCHAR: The dataset's organization (the producer).
--   position BIGINT: 0 for the opening message, then 1, 2... in the order of the thread.
--   posted_at TIMESTAMP WITH TIME ZONE: When the message was posted.
--   author_id VARCHAR: data.gouv.fr user id of the author.
--   author_slug VARCHAR: Public slug of the author.
--   author_name VARCHAR: Public name of the author (first and last name as shown on the portal).
--   posted_as_organization_id VARCHAR: The organization the message was posted in the name of, if any.
--   posted_as_organization_name VARCHAR: Name of that organization.
--   posted_as_organization_slug VARCHAR: Slug of that organization.
--   is_producer BOOLEAN: True when the producer wrote the message (see the table description).
--   content VARCHAR: The message text (markdown).
with dataset_organizations as (
    select
        dataset_id,
        arg_max(organization_id, snapshot_date) as organization_id,
        arg_max(owner_id, snapshot_date) as owner_id
    from staging.dataset_snapshots
    where http_status = 200
    group by dataset_id
),
latest as (
    select dataset_id, discussion_id, payload
    from raw.discussions
    qualify row_number() over (partition by discussion_id order by snapshot_date desc) = 1
),
messages as (
    select
        latest.discussion_id,
        latest.dataset_id,
        dataset_organizations.organization_id,
        dataset_organizations.owner_id,
        unnest(latest.payload -> '$.discussion[*]') as message,
        generate_subscripts(latest.payload -> '$.discussion[*]', 1) - 1 as position
    from latest
    left join dataset_organizations using (dataset_id)
),
fields as (
    select
        discussion_id,
        dataset_id,
        organization_id,
        owner_id,
        position,
        try_cast(message ->> '$.posted_on' as timestamptz) as posted_at,
        message ->> '$.posted_by.id' as author_id,
        message ->> '$.posted_by.slug' as author_slug,
        nullif(trim(concat_ws(' ', message ->> '$.posted_by.first_name', message ->> '$.posted_by.last_name')), '')
            as author_name,
        message ->> '$.posted_by_organization.id' as posted_as_organization_id,
        message ->> '$.posted_by_organization.name' as posted_as_organization_name,
        message ->> '$.posted_by_organization.slug' as posted_as_organization_slug,
        message ->> '$.content' as content
    from messages
)
select
    fields.discussion_id,
    fields.dataset_id,
    fields.organization_id,
    fields.position,
    fields.posted_at,
    fields.author_id,
    fields.author_slug,
    fields.author_name,
    fields.posted_as_organization_id,
    fields.posted_as_organization_name,
    fields.posted_as_organization_slug,
    coalesce(
        members.user_id is not null
        or fields.posted_as_organization_id = fields.organization_id
        or (fields.organization_id is null and fields.author_id = fields.owner_id),
        false
    ) as is_producer,
    fields.content
from fields
left join staging.organization_members as members
    on members.organization_id = fields.organization_id and members.user_id = fields.author_id
