-- reporting.survey_responses
-- One row per answer to the producer's surveys of its reusers (files of $USAGE_DATA_DIR/surveys/, described
-- by surveys.yaml), from the latest accepted version of each file. E-mails are never kept: respondent_hash is
-- a salted hash, the same for the same address across files.
-- grain: file, row_number
-- columns:
--   file VARCHAR: The survey file, relative to the surveys folder.
--   row_number INTEGER: The answer's row in that file (the header is row 1).
--   dataset_id VARCHAR: The dataset the answer is about.
--   dataset_title VARCHAR: Its title.
--   submitted_at TIMESTAMP WITH TIME ZONE: When the answer was submitted.
--   satisfaction INTEGER: Satisfaction from 1 (poor) to 5 (excellent); null when not given.
--   needs VARCHAR: What the respondent says is missing (free text).
--   needs_theme VARCHAR: Theme of that text: accessibility, freshness, reliability, usability or other.
--   needs_evidence VARCHAR[]: The words of the text that decided the theme.
--   reuse_type VARCHAR: The respondent's kind of use, as answered.
--   respondent_organization VARCHAR: The respondent's organization, as answered.
--   respondent_hash VARCHAR: Salted hash of the respondent's e-mail (to count people, never to contact them).
select
    responses.file,
    responses.row_number,
    responses.dataset_id,
    datasets.title as dataset_title,
    responses.submitted_at,
    responses.satisfaction,
    responses.needs,
    responses.needs_theme,
    responses.needs_evidence,
    responses.reuse_type,
    responses.respondent_organization,
    responses.respondent_hash
from raw.survey_responses as responses
left join reporting.datasets as datasets using (dataset_id)
order by responses.file, responses.row_number
