"""The `survey_files` sensor: a run when a survey file (or surveys.yaml) has a content not requested yet.

Every 60 s it hashes surveys.yaml and the files its patterns match. The cursor is the JSON of file -> SHA-256
already requested (surveys.yaml included, so that a fixed mapping retries the rejected files, and a broken one
fails a run with its message instead of going unnoticed). Files with another hash than the cursor's are
pending: one RunRequest for the survey job, whose run key is the SHA-256 of the pending (file, previous hash,
new hash) triples, so the same change is never requested twice, even with a lost cursor, while a file changed
back to an earlier content is requested again. The run ingests whatever is pending in the warehouse then,
so a failed run's files are picked up by the next materialization.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg

from usage_pipeline.data_dir import DataDir
from usage_pipeline.surveys.config import CONFIG_FILE, SurveyConfigError, load_config, matching_files
from usage_pipeline.surveys.ingest import content_hash

SENSOR_NAME = "survey_files"
SURVEY_JOB_NAME = "survey_ingest"


def current_contents(surveys_dir: Path) -> dict[str, str]:
    """surveys.yaml and the files it matches, by path in the folder, with their SHA-256 (empty without yaml)."""
    config_path = surveys_dir / CONFIG_FILE
    try:
        contents = {CONFIG_FILE: content_hash(config_path.read_bytes())}
    except OSError:
        return {}
    try:
        config = load_config(surveys_dir)
    except SurveyConfigError:
        return contents  # the run requested for this yaml content fails with the message
    for file, (path, _) in matching_files(surveys_dir, config).items() if config else ():
        try:
            contents[file] = content_hash(path.read_bytes())
        except OSError:
            continue
    return contents


def parse_cursor(cursor: str | None) -> dict[str, str]:
    """The file -> hash map of a cursor; empty for none or a cursor this version cannot read."""
    try:
        state = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in state.items()} if isinstance(state, dict) else {}


def pending_request(cursor: str | None, surveys_dir: Path) -> tuple[dg.RunRequest | None, str, list[str]]:
    """The run request for the contents not requested yet (or None), the new cursor and the pending files."""
    requested = parse_cursor(cursor)
    contents = current_contents(surveys_dir)
    pending = sorted(file for file, digest in contents.items() if requested.get(file) != digest)
    new_cursor = json.dumps(contents, sort_keys=True, separators=(",", ":"))
    if not pending:
        return None, new_cursor, []
    changes = "\n".join(f"{file}\0{requested.get(file, '')}\0{contents[file]}" for file in pending)
    run_key = hashlib.sha256(changes.encode("utf-8")).hexdigest()
    request = dg.RunRequest(run_key=f"surveys-{run_key}", tags={"usage_pipeline/survey_files": str(len(pending))})
    return request, new_cursor, pending


@dg.sensor(
    name=SENSOR_NAME,
    job_name=SURVEY_JOB_NAME,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        f"Every minute, launches {SURVEY_JOB_NAME} when $USAGE_DATA_DIR/surveys/{CONFIG_FILE} or a survey file it "
        "describes is new or changed (SHA-256), once per content."
    ),
)
def survey_files(context: dg.SensorEvaluationContext, data_dir: DataDir) -> dg.SensorResult:
    """A run of the survey job when the surveys folder has contents not requested yet."""
    request, cursor, pending = pending_request(context.cursor, data_dir.surveys_dir)
    if request is None:
        return dg.SensorResult(skip_reason=f"no new survey content in {data_dir.surveys_dir}", cursor=cursor)
    context.log.info(f"new survey contents: {', '.join(pending)}")
    return dg.SensorResult(run_requests=[request], cursor=cursor)
