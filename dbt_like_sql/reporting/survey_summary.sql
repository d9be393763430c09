-- reporting.survey_summary
-- What the surveys say per dataset: how many answered, how satisfied they are, and what they miss (themes of
-- the free-text needs, most frequent first).
-- grain: dataset_id
-- columns:
--   dataset_id VARCHAR: The dataset.
--   dataset_title VARCHAR: Its title.
--   responses BIGINT: Answers about the dataset.
--   respondents BIGINT: Distinct respondents among the answers that gave an e-mail (salted hashes).
--   mean_satisfaction DOUBLE: Mean satisfaction (1 to 5), rounded to 2 decimals; null when nobody rated.
--   satisfied_share DOUBLE: Share of ratings at 4 or 5.
--   top_needs_themes VARCHAR: Themes of the needs with their counts, most frequent first, e.g. "usability (4), freshness (2)".
--   top_needs_terms VARCHAR: The most frequent words that decided those themes, with their counts (up to 5).
--   first_response_at TIMESTAMP WITH TIME ZONE: First answer.
--   last_response_at TIMESTAMP WITH TIME ZONE: Latest answer.
with themes as (
    select dataset_id, string_agg(needs_theme || ' (' || n || ')', ', ' order by n desc, needs_theme) as top_needs_themes
    from (
        select dataset_id, needs_theme, count(*) as n
        from reporting.survey_responses
        where needs_theme is not null
        group by all
    )
    group by dataset_id
),
term_counts as (
    select dataset_id, lower(term) as term, count(*) as n
    from (select dataset_id, unnest(needs_evidence) as term from reporting.survey_responses)
    group by 1, 2
),
terms as (
    select dataset_id, string_agg(term || ' (' || n || ')', ', ' order by n desc, term) as top_needs_terms
    from (
        select * from term_counts
        qualify row_number() over (partition by dataset_id order by n desc, term) <= 5
    )
    group by dataset_id
)
select
    responses.dataset_id,
    any_value(responses.dataset_title) as dataset_title,
    count(*) as responses,
    count(distinct responses.respondent_hash) as respondents,
    round(avg(responses.satisfaction), 2) as mean_satisfaction,
    round(count(*) filter (where responses.satisfaction >= 4) / nullif(count(responses.satisfaction), 0), 4)
        as satisfied_share,
    any_value(themes.top_needs_themes) as top_needs_themes,
    any_value(terms.top_needs_terms) as top_needs_terms,
    min(responses.submitted_at) as first_response_at,
    max(responses.submitted_at) as last_response_at
from reporting.survey_responses as responses
left join themes using (dataset_id)
left join terms using (dataset_id)
group by responses.dataset_id
order by responses.dataset_id
