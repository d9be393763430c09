-- reporting.reuser_activity
-- Every public action of a reuser on a followed dataset: a reuse published, a discussion opened, a reply
-- posted. The reuser is the organization when the reuse or message was published in its name, else the user.
-- The producer is left out: its own reuses (published by the dataset's organization or one of its members) and
-- messages. reporting.reusers and reporting.interview_candidates are built on it.
-- grain: kind, object_id, dataset_id
-- columns:
--   reuser_type VARCHAR: user or organization.
--   reuser_id VARCHAR: data.gouv.fr id of the user or organization.
--   name VARCHAR: Public name.
--   slug VARCHAR: Public slug (their page on the portal).
--   dataset_id VARCHAR: The followed dataset.
--   kind VARCHAR: reuse, discussion (the opening message) or message (a reply).
--   object_id VARCHAR: The reuse id, or <discussion id>:<message position>.
--   reuse_type VARCHAR: For a reuse, its type (application, visualization...); null otherwise.
--   active_at TIMESTAMP WITH TIME ZONE: When it was published or posted (a reuse without a date: when first seen).
select reuses.owner_type as reuser_type, reuses.owner_id as reuser_id, reuses.owner_name as name,
    reuses.owner_slug as slug, reuses.dataset_id, 'reuse' as kind, reuses.reuse_id as object_id,
    reuses.type as reuse_type, coalesce(reuses.created_at, reuses.first_seen_date::timestamptz) as active_at
from reporting.reuses as reuses
left join reporting.datasets as datasets using (dataset_id)
where reuses.owner_id is not null
    and reuses.owner_id is distinct from coalesce(datasets.organization_id, datasets.owner_id)
    and not exists (
        select 1 from staging.organization_members as members
        where members.organization_id = datasets.organization_id and members.user_id = reuses.owner_id
    )
union all
select
    case when posted_as_organization_id is not null then 'organization' else 'user' end,
    coalesce(posted_as_organization_id, author_id),
    coalesce(posted_as_organization_name, author_name),
    coalesce(posted_as_organization_slug, author_slug),
    dataset_id,
    case when position = 0 then 'discussion' else 'message' end,
    discussion_id || ':' || position,
    null,
    posted_at
from staging.discussion_messages
where not is_producer and coalesce(posted_as_organization_id, author_id) is not null
