-- reporting.discussion_themes
-- What reusers write about, over time: discussions opened per dataset, month and theme (accessibility,
-- freshness, reliability, usability, other; see reporting.discussions.theme).
-- grain: dataset_id, month, theme
-- columns:
--   dataset_id VARCHAR: The dataset.
--   month VARCHAR: The month the discussions were opened, YYYY-MM.
--   theme VARCHAR: The theme.
--   discussions BIGINT: Discussions of that theme opened that month on that dataset.
select dataset_id, strftime(created_at, '%Y-%m') as month, theme, count(*) as discussions
from reporting.discussions
group by all
order by dataset_id, month, theme
