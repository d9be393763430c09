-- reporting.reuse_leads
-- Reuses nobody declared: works found on GitHub, in HAL or among the portal's reuses that cite a followed
-- dataset without being declared as its reuse, with what the producer did about them. A lead becomes
-- `declared` as soon as a reuse of the dataset has the same address (compared without scheme, `www.`, case,
-- trailing slash or `.git`) or an address inside it (a repository's page, file or tree).
-- grain: url, dataset_id
-- columns:
--   source VARCHAR: Where it was found: github, hal, portal (several, comma-separated, when more than one found it).
--   url VARCHAR: The work: a repository, a HAL publication page, a reuse's own address.
--   title VARCHAR: Its title (a repository's owner/name), as last seen.
--   author VARCHAR: Its owner or authors, public names only, as last seen.
--   dataset_id VARCHAR: The followed dataset it cites.
--   dataset_title VARCHAR: That dataset's title.
--   matched VARCHAR: The dataset identifier found (page, resource or API path, slug or title), as last seen.
--   excerpt VARCHAR: Where it was found, one line, at most 200 characters; raw text: escape it to show it.
--   first_seen_date DATE: The first run that found it.
--   last_seen_date DATE: The latest run that found it.
--   status VARCHAR: declared (now a declared reuse of the dataset), else the producer's word in reuse_leads_status.csv (invited, dismissed), else new.
with leads as (
    select
        url,
        dataset_id,
        string_agg(distinct source, ',' order by source) as source,
        arg_max(title, seen_date) as title,
        arg_max(author, seen_date) as author,
        arg_max(matched, seen_date) as matched,
        arg_max(excerpt, seen_date) as excerpt,
        min(seen_date) as first_seen_date,
        max(seen_date) as last_seen_date,
        regexp_replace(regexp_replace(lower(trim(url)), '^https?://(www\.)?', ''), '(\.git)?/*$', '') as work
    from raw.reuse_lead_sightings
    group by url, dataset_id
),
declared as (
    select distinct
        dataset_id,
        regexp_replace(regexp_replace(lower(trim(address)), '^https?://(www\.)?', ''), '(\.git)?/*$', '') as address
    from reporting.reuses, unnest([url, page_url]) as addresses(address)
    where removed_date is null and address is not null
),
titles as (
    select dataset_id, title as dataset_title from reporting.datasets
)
select
    leads.source,
    leads.url,
    leads.title,
    leads.author,
    leads.dataset_id,
    titles.dataset_title,
    leads.matched,
    leads.excerpt,
    leads.first_seen_date,
    leads.last_seen_date,
    case
        when exists (
            select 1 from declared
            where declared.dataset_id = leads.dataset_id
                and (declared.address = leads.work or starts_with(declared.address, leads.work || '/'))
        ) then 'declared'
        when statuses.status in ('invited', 'dismissed') then statuses.status
        else 'new'
    end as status
from leads
left join titles using (dataset_id)
left join raw.reuse_lead_statuses as statuses on statuses.url = leads.url and statuses.dataset_id = leads.dataset_id
order by leads.dataset_id, leads.last_seen_date desc, leads.url
