"""Survey results: what reusers answer to the producer's own surveys, as raw tables next to the portal's.

Producers export their survey answers (LimeSurvey, Framaforms, Grist, Google Forms... as CSV or XLSX) into
``$USAGE_DATA_DIR/surveys/`` and describe them in ``surveys/surveys.yaml`` (``config.py``): which files (glob
patterns) and which column holds which field. ``assets.py`` ingests every new or changed file into
``raw.survey_files`` and ``raw.survey_responses`` (``tables.py``); ``sensors.py`` launches a run when one
appears.

Rules (the details are in each module's docstring):

* **Once per content.** A file is keyed by its path in the folder and the SHA-256 of its bytes. A file whose
  content is the one ingested last is skipped; a new content replaces the file's previous responses in one
  transaction. A malformed file is rejected as a whole (``raw.survey_files.status = 'rejected'`` with the rows
  and columns at fault) and the file's previous good responses stay. Rejected contents are tried again on the
  next materialization (a fix of surveys.yaml or of the followed datasets may make them valid). A file removed
  from the folder keeps its responses.
* **Encodings** (CSV): UTF-8, with or without BOM. Windows-1252 (the "CSV (séparateur: point-virgule)" of a
  French Excel) only for a file whose entry declares ``encoding: cp1252``, and only when the bytes are not valid
  UTF-8. Anything else (UTF-16 or UTF-32, with or without BOM, binary data, bytes undefined in cp1252) is
  rejected with the rows and columns where it fails to decode and the advice to re-export as CSV UTF-8.
  Delimiter: among ``;``, ``,`` and tab, the one whose header row holds the most mapped headers, ties broken by
  ``csv.Sniffer``. XLSX: first sheet, header in row 1, read with openpyxl.
* **Dates**: ISO 8601 (``2026-11-20``, ``2026-11-20 14:03``, ``2026-11-20T14:03:05.5+01:00``, ``...Z``) and
  French ``dd/mm/yyyy``, ``dd/mm/yyyy hh:mm``, ``dd/mm/yyyy hh:mm:ss`` (also ``14h03``); XLSX date cells as is.
  A time without offset is Europe/Paris time. Stored as TIMESTAMPTZ.
* **Privacy**: ``email`` is stored only as HMAC-SHA256(salt, trimmed lower-case address) with the salt of
  ``USAGE_PSEUDONYM_SALT``; a file mapping ``email`` without a salt is rejected. E-mail addresses written in
  free-text answers are replaced by ``[e-mail]``, and error messages never quote the email column.
"""
