-- staging.organization_members
-- Every user seen as a member of an organization in any snapshot: a message they post on one of the
-- organization's datasets is the producer speaking (people who left still count for their past answers).
-- grain: organization_id, user_id
-- columns:
--   organization_id VARCHAR: data.gouv.fr organization id.
--   user_id VARCHAR: data.gouv.fr user id of the member.
--   role VARCHAR: The member's role (admin, editor, partial_editor) in the latest snapshot that lists them.
--   first_seen_date DATE: First snapshot date listing the user as a member.
--   last_seen_date DATE: Last snapshot date listing the user as a member.
with members as (
    select
        organization_id,
        snapshot_date,
        unnest(payload -> '$.members[*]') as member
    from raw.organizations
)
select
    organization_id,
    member ->> '$.user.id' as user_id,
    arg_max(member ->> '$.role', snapshot_date) as role,
    min(snapshot_date) as first_seen_date,
    max(snapshot_date) as last_seen_date
from members
where member ->> '$.user.id' is not null
group by all
