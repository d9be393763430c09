-- reporting.reuse_health
-- The history of the checks of every reuse's address (at most one a day per address): HEAD, then GET where
-- HEAD is refused, redirects followed. A reuse whose last 3 checks failed is flagged link_broken in
-- reporting.reuses.
-- grain: reuse_id, url, checked_at
-- columns:
--   reuse_id VARCHAR: data.gouv.fr reuse id.
--   url VARCHAR: The address checked (the reuse's own URL).
--   checked_at TIMESTAMP WITH TIME ZONE: When it was checked.
--   http_status INTEGER: Final HTTP status; null when no answer (timeout, DNS or connection error).
--   final_url VARCHAR: Address reached after redirects.
--   ok BOOLEAN: Whether the address answered as alive.
--   error VARCHAR: What went wrong when it did not answer.
select reuse_id, url, checked_at, http_status, final_url, ok, error
from raw.reuse_link_checks
order by reuse_id, checked_at
