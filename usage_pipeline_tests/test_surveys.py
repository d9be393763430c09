"""Survey results: CSV and XLSX files ingested once per content, malformed ones rejected whole, e-mails hashed."""

import codecs
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
from pathlib import Path

import dagster as dg
import duckdb
import openpyxl
import pytest
import yaml
from dagster_duckdb import DuckDBResource

from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.assets import WAREHOUSE_POOL
from usage_pipeline.surveys.assets import SURVEY_RESPONSES_KEY, survey_responses
from usage_pipeline.surveys.config import SurveyConfigError, load_config
from usage_pipeline.surveys.ingest import SurveyRun, ingest_surveys, known_datasets
from usage_pipeline.surveys.responses import KnownDatasets, parse_satisfaction, parse_timestamp
from usage_pipeline.surveys.sensors import SENSOR_NAME, SURVEY_JOB_NAME, survey_files
from usage_pipeline.surveys.tables import SURVEY_FILES_TABLE, SURVEY_RESPONSES_TABLE

SALT = "test-salt-0123456789abcdef"
SIRENE = "5b7ffc618b4c4169d30727e0"
BAN = "5530fbacc751df5ff937dddb"
DATASETS = [(SIRENE, "base-sirene-des-entreprises"), (BAN, "base-adresse-nationale")]
PARIS = dt.timezone(dt.timedelta(hours=1))  # November: CET

DATASET = "Quel jeu de données utilisez-vous ?"
SUBMITTED = "Date de soumission"
NOTE = "Note (1 à 5)"
NEEDS = "Qu'est-ce qui vous manque ?"
USE = "Type d'usage"
ORG = "Organisation"
MAIL = "Courriel"
COLUMNS = {
    "dataset": DATASET,
    "submitted_at": SUBMITTED,
    "satisfaction": NOTE,
    "needs": NEEDS,
    "reuse_type": USE,
    "respondent_organization": ORG,
    "email": MAIL,
}
HEADER = [SUBMITTED, DATASET, NOTE, NEEDS, USE, ORG, MAIL]
EMAIL = "jean.dupont@example.org"

# Spreadsheet rows 2.., in HEADER order; row 4 is blank (skipped), row 5's needs span two lines.
CSV_ROWS = [
    [
        "20/11/2026 14:03",
        SIRENE,
        "4",
        "Le fichier n'est plus à jour depuis mars",
        "Application",
        "Ville de Lyon",
        EMAIL,
    ],
    ["21/11/2026", "base-sirene-des-entreprises", "5", "", "Étude", "", ""],
    ["", "", "", "", "", "", ""],
    [
        "22/11/2026 09:15:30",
        "https://www.data.gouv.fr/fr/datasets/base-adresse-nationale/",
        "2",
        "Le lien est mort :\nerreur 404 (écrivez-moi à jean.dupont@example.org)",
        "",
        "Etalab",
        f"  {EMAIL.upper()} ",
    ],
]


def csv_text(rows: list[list[str]], header: list[str] = HEADER, delimiter: str = ";") -> str:
    """A CSV as survey tools write it: every cell quoted, CRLF line ends."""

    def line(cells: list[str]) -> str:
        return delimiter.join('"' + cell.replace('"', '""') + '"' for cell in cells)

    return "\r\n".join(line(cells) for cells in [header, *rows]) + "\r\n"


def write_config(surveys_dir: Path, entries: list[dict]) -> None:
    surveys_dir.mkdir(parents=True, exist_ok=True)
    (surveys_dir / "surveys.yaml").write_text(yaml.safe_dump({"files": entries}, allow_unicode=True), "utf-8")


def write_xlsx(path: Path, header: list[object], rows: list[list[object]]) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Réponses"
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    workbook.create_sheet("Notes").append(["not", "read"])
    workbook.save(path)


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    """A warehouse that follows two datasets (reporting.datasets)."""
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA reporting")
        conn.execute("CREATE TABLE reporting.datasets (dataset_id VARCHAR, slug VARCHAR, status VARCHAR)")
        conn.executemany("INSERT INTO reporting.datasets VALUES (?, ?, 'active')", DATASETS)
    return path


@pytest.fixture
def surveys(tmp_path: Path) -> Path:
    return tmp_path / "surveys"


def ingest(warehouse: Path, surveys_dir: Path, salt: str | None = SALT, **options: object) -> SurveyRun:
    with duckdb.connect(str(warehouse)) as conn:
        return ingest_surveys(conn, surveys_dir, salt, **options)


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse)) as conn:
        return conn.execute(sql, params or []).fetchall()


def responses(warehouse: Path, file: str) -> list[dict]:
    with duckdb.connect(str(warehouse)) as conn:
        result = conn.execute(f"SELECT * FROM {SURVEY_RESPONSES_TABLE} WHERE file = ? ORDER BY row_number", [file])
        names = [column[0] for column in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def outcomes(run: SurveyRun) -> dict[str, str]:
    return {outcome.file: outcome.status for outcome in run.outcomes}


def error_of(run: SurveyRun, file: str) -> str:
    (outcome,) = [outcome for outcome in run.outcomes if outcome.file == file]
    assert outcome.status == "rejected", outcome
    return outcome.error or ""


def good_csv(surveys_dir: Path, name: str = "enquete-2026.csv") -> Path:
    path = surveys_dir / name
    path.write_bytes(codecs.BOM_UTF8 + csv_text(CSV_ROWS).encode("utf-8"))
    return path


def paris(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=PARIS)


# --- reading and values -------------------------------------------------------------------------------------------


def test_csv_and_xlsx_ingest_with_their_values(warehouse: Path, surveys: Path) -> None:
    write_config(
        surveys,
        [
            {"pattern": "enquete-*.csv", "columns": COLUMNS},
            {
                "pattern": "grist/*.xlsx",
                "columns": {k: v for k, v in COLUMNS.items() if k not in ("reuse_type", "respondent_organization")},
            },
        ],
    )
    good_csv(surveys)
    (surveys / "grist").mkdir()
    write_xlsx(
        surveys / "grist" / "export.xlsx",
        [DATASET, SUBMITTED, NOTE, NEEDS, MAIL, "Autre colonne"],  # other order, extra column, no USE/ORG
        [
            [f"https://www.data.gouv.fr/datasets/{SIRENE}", dt.datetime(2026, 11, 23, 8, 30), 3, "Quel séparateur ?"],
            [],  # blank row: skipped, numbering goes on
            ["BASE-ADRESSE-NATIONALE", "2026-11-24T10:00:00+00:00", 5.0, None, EMAIL.title(), "x"],
        ],
    )
    # Office lock files and surveys.yaml itself never count as survey files.
    (surveys / "grist" / "~$export.xlsx").write_bytes(b"lock")

    run = ingest(warehouse, surveys)

    assert outcomes(run) == {"enquete-2026.csv": "ingested", "grist/export.xlsx": "ingested"}
    by_file = {outcome.file: outcome for outcome in run.outcomes}
    assert by_file["enquete-2026.csv"].reading == "CSV, UTF-8 with BOM, delimiter ';' (header)"
    assert by_file["grist/export.xlsx"].reading == "XLSX, first sheet 'Réponses'"
    digest = hashlib.sha256((surveys / "enquete-2026.csv").read_bytes()).hexdigest()
    assert by_file["enquete-2026.csv"].content_hash == digest

    csv_rows = responses(warehouse, "enquete-2026.csv")
    assert [row["row_number"] for row in csv_rows] == [2, 3, 5]
    assert [row["dataset_id"] for row in csv_rows] == [SIRENE, SIRENE, BAN]
    assert [row["submitted_at"] for row in csv_rows] == [
        paris(2026, 11, 20, 14, 3),
        paris(2026, 11, 21),
        paris(2026, 11, 22, 9, 15, 30),
    ]
    assert [row["satisfaction"] for row in csv_rows] == [4, 5, 2]
    first, second, third = csv_rows
    assert first["content_hash"] == digest
    assert first["needs"] == "Le fichier n'est plus à jour depuis mars"
    assert first["needs_theme"] == "freshness"
    assert "à jour" in " ".join(first["needs_evidence"])
    assert (first["reuse_type"], first["respondent_organization"]) == ("Application", "Ville de Lyon")
    assert second["needs"] is None and second["needs_theme"] is None and second["needs_evidence"] is None
    assert (second["reuse_type"], second["respondent_organization"], second["respondent_hash"]) == ("Étude", None, None)
    assert third["needs"] == "Le lien est mort :\nerreur 404 (écrivez-moi à [e-mail])"
    assert third["needs_theme"] == "accessibility"
    assert first["ingested_at"].tzinfo is not None

    xlsx_rows = responses(warehouse, "grist/export.xlsx")
    assert [row["row_number"] for row in xlsx_rows] == [2, 4]
    assert [row["dataset_id"] for row in xlsx_rows] == [SIRENE, BAN]
    assert [row["submitted_at"] for row in xlsx_rows] == [
        paris(2026, 11, 23, 8, 30),
        dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC),
    ]
    assert [row["satisfaction"] for row in xlsx_rows] == [3, 5]
    assert xlsx_rows[0]["needs_theme"] == "usability"
    assert xlsx_rows[1]["needs"] is None
    assert {row["reuse_type"] for row in xlsx_rows} == {None}

    files = query(warehouse, f"SELECT file, content_hash, status, responses, error FROM {SURVEY_FILES_TABLE}")
    assert sorted(files) == [
        ("enquete-2026.csv", digest, "ingested", 3, None),
        ("grist/export.xlsx", by_file["grist/export.xlsx"].content_hash, "ingested", 2, None),
    ]
    comments = dict(query(warehouse, "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = 'raw'"))
    assert comments["survey_files"] and comments["survey_responses"]
    column_comments = query(
        warehouse,
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'survey_responses' AND comment IS NOT NULL",
    )
    assert column_comments == [(13,)]


def test_emails_are_pseudonymized_and_stored_nowhere(warehouse: Path, surveys: Path) -> None:
    write_config(surveys, [{"pattern": "*.csv", "columns": COLUMNS}, {"pattern": "*.xlsx", "columns": COLUMNS}])
    good_csv(surveys)
    write_xlsx(surveys / "b.xlsx", HEADER, [["2026-11-25", SIRENE, 4, "", "", "", EMAIL.upper()]])
    # A rejected file whose e-mail cell is not UTF-8: the error names the cell, never the address.
    bad = csv_text([["2026-11-25", "inconnu", "4", "", "", "", "jérôme@exemple.fr"]]).encode("cp1252")
    (surveys / "c.csv").write_bytes(bad)

    run = ingest(warehouse, surveys)

    assert outcomes(run) == {"b.xlsx": "ingested", "c.csv": "rejected", "enquete-2026.csv": "ingested"}
    assert "row 2" in error_of(run, "c.csv") and "(email)" in error_of(run, "c.csv")
    expected = hmac.new(SALT.encode(), EMAIL.encode(), hashlib.sha256).hexdigest()
    hashes = query(warehouse, f"SELECT file, row_number, respondent_hash FROM {SURVEY_RESPONSES_TABLE} ORDER BY 1, 2")
    assert hashes == [
        ("b.xlsx", 2, expected),
        ("enquete-2026.csv", 2, expected),
        ("enquete-2026.csv", 3, None),
        ("enquete-2026.csv", 5, expected),  # "  JEAN.DUPONT@... " is the same respondent
    ]
    stored = b"".join(path.read_bytes() for path in warehouse.parent.glob("warehouse.duckdb*"))
    for text in (EMAIL, "jérôme", "exemple.fr"):
        assert text.encode() not in stored.lower()
        assert text.encode("utf-16-le") not in stored.lower()
    assert EMAIL not in json.dumps([outcome.as_metadata() for outcome in run.outcomes])

    # Another salt gives other hashes.
    other = warehouse.parent / "other.duckdb"
    with duckdb.connect(str(other)) as conn:
        conn.execute("CREATE SCHEMA reporting")
        conn.execute("CREATE TABLE reporting.datasets (dataset_id VARCHAR, slug VARCHAR)")
        conn.executemany("INSERT INTO reporting.datasets VALUES (?, ?)", DATASETS)
    ingest(other, surveys, salt="another salt")
    rehashed = query(other, f"SELECT DISTINCT respondent_hash FROM {SURVEY_RESPONSES_TABLE} WHERE file = 'b.xlsx'")
    assert len(rehashed) == 1 and rehashed[0][0] not in (expected, None)


def test_email_mapping_without_salt_is_refused(warehouse: Path, surveys: Path) -> None:
    no_email = {key: value for key, value in COLUMNS.items() if key != "email"}
    write_config(
        surveys, [{"pattern": "with-email.csv", "columns": COLUMNS}, {"pattern": "plain.csv", "columns": no_email}]
    )
    good_csv(surveys, "with-email.csv")
    good_csv(surveys, "plain.csv")

    run = ingest(warehouse, surveys, salt=None)

    assert outcomes(run) == {"plain.csv": "ingested", "with-email.csv": "rejected"}
    error = error_of(run, "with-email.csv")
    assert error.startswith("with-email.csv rejected:")
    assert "USAGE_PSEUDONYM_SALT is not set" in error and '"Courriel"' in error
    assert query(warehouse, f"SELECT count(*) FROM {SURVEY_RESPONSES_TABLE} WHERE file = 'with-email.csv'") == [(0,)]
    assert query(warehouse, f"SELECT DISTINCT respondent_hash FROM {SURVEY_RESPONSES_TABLE}") == [(None,)]
    # Once the salt is set, the rejected content is tried again.
    assert outcomes(ingest(warehouse, surveys)) == {"plain.csv": "unchanged", "with-email.csv": "ingested"}


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (SIRENE, SIRENE),
        (SIRENE.upper(), SIRENE),
        ("base-sirene-des-entreprises", SIRENE),
        (" Base-Sirene-Des-Entreprises ", SIRENE),
        (f"https://www.data.gouv.fr/fr/datasets/{SIRENE}/", SIRENE),
        (f"https://www.data.gouv.fr/datasets/{SIRENE}", SIRENE),
        ("https://www.data.gouv.fr/fr/datasets/base-adresse-nationale/", BAN),
        ("https://www.data.gouv.fr/datasets/base-adresse-nationale", BAN),
        ("https://www.data.gouv.fr/en/datasets/base-adresse-nationale/#/resources", BAN),
        ("http://data.gouv.fr/fr/datasets/base-adresse-nationale/discussions/?x=1", BAN),
        (f"https://www.data.gouv.fr/api/1/datasets/{SIRENE}/", SIRENE),
        ("base-adresse", None),
        ("5b7ffc618b4c4169d30727e1", None),
        ("https://www.data.gouv.fr/fr/reuses/base-adresse-nationale/", None),
        ("https://www.data.gouv.fr/fr/datasets/", None),
        ("la base Sirene", None),
    ],
)
def test_dataset_references(reference: str, expected: str | None) -> None:
    assert KnownDatasets.of(DATASETS, "test").resolve(reference) == expected


def test_datasets_from_staging_when_no_reporting_table(tmp_path: Path, surveys: Path) -> None:
    warehouse = tmp_path / "fallback.duckdb"
    write_config(surveys, [{"pattern": "*.csv", "columns": COLUMNS}])
    good_csv(surveys)
    with duckdb.connect(str(warehouse)) as conn:
        assert known_datasets(conn).ids == {}
    run = ingest(warehouse, surveys)
    assert "run a refresh first" in error_of(run, "enquete-2026.csv")
    with duckdb.connect(str(warehouse)) as conn:
        conn.execute("CREATE SCHEMA staging")
        conn.execute("CREATE TABLE staging.dataset_snapshots (snapshot_date DATE, dataset_id VARCHAR, slug VARCHAR)")
        for day in (1, 2):
            conn.executemany(f"INSERT INTO staging.dataset_snapshots VALUES ('2026-11-0{day}', ?, ?)", DATASETS)
        assert known_datasets(conn).source == "staging.dataset_snapshots"
    assert outcomes(ingest(warehouse, surveys)) == {"enquete-2026.csv": "ingested"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20/11/2026", paris(2026, 11, 20)),
        ("5/7/2026", dt.datetime(2026, 7, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        ("20/11/2026 14:03", paris(2026, 11, 20, 14, 3)),
        ("20/11/2026 14h03", paris(2026, 11, 20, 14, 3)),
        ("20/11/2026 14:03:05", paris(2026, 11, 20, 14, 3, 5)),
        ("2026-11-20", paris(2026, 11, 20)),
        ("2026-11-20 14:03", paris(2026, 11, 20, 14, 3)),
        ("2026-11-20T14:03:05.250+01:00", paris(2026, 11, 20, 14, 3, 5, 250000)),
        ("2026-11-20T13:03:05Z", paris(2026, 11, 20, 14, 3, 5)),
        (dt.datetime(2026, 11, 20, 14, 3), paris(2026, 11, 20, 14, 3)),
        (dt.date(2026, 11, 20), paris(2026, 11, 20)),
        ("31/02/2026", None),
        ("2026-13-01", None),
        ("11/20/2026", None),
        ("20/11/26", None),
        ("hier", None),
        ("", None),
        (45250, None),
    ],
)
def test_dates(text: object, expected: dt.datetime | None) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo == dt.UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("4", 4), (" 5 ", 5), ("1", 1), ("3.0", 3), ("3,0", 3), (2, 2), (4.0, 4)],
        *[("0", None), ("6", None), ("4,5", None), (4.5, None), ("quatre", None), (True, None), ("-1", None)],
    ],
)
def test_satisfaction(value: object, expected: int | None) -> None:
    assert parse_satisfaction(value) == expected


@pytest.mark.parametrize(("delimiter", "name"), [(",", "comma"), ("\t", "tab")])
def test_other_delimiters_utf8_without_bom(warehouse: Path, surveys: Path, delimiter: str, name: str) -> None:
    rows = [["2026-11-20 10:00", SIRENE, "3", "Données manquantes, encodage, séparateur", "", "", ""]]
    write_config(surveys, [{"pattern": "*.csv", "columns": COLUMNS}])
    (surveys / "export.csv").write_text(csv_text(rows, delimiter=delimiter), encoding="utf-8")
    run = ingest(warehouse, surveys)
    assert outcomes(run) == {"export.csv": "ingested"}
    assert run.outcomes[0].reading == f"CSV, UTF-8, delimiter {delimiter!r} (header)"
    assert responses(warehouse, "export.csv")[0]["needs"] == "Données manquantes, encodage, séparateur"


def test_declared_cp1252_is_read_as_cp1252(warehouse: Path, surveys: Path) -> None:
    write_config(surveys, [{"pattern": "*.csv", "encoding": "cp1252", "columns": COLUMNS}])
    rows = [["20/11/2026", SIRENE, "4", "Il manque l’année 2025 — données", "Étude", "Mairie d'Évry", ""]]
    (surveys / "excel.csv").write_bytes(csv_text(rows).encode("cp1252"))
    (surveys / "utf8.csv").write_bytes(csv_text(rows).encode("utf-8"))  # valid UTF-8 stays UTF-8
    run = ingest(warehouse, surveys)
    assert outcomes(run) == {"excel.csv": "ingested", "utf8.csv": "ingested"}
    assert [outcome.reading for outcome in run.outcomes] == [
        "CSV, cp1252, delimiter ';' (header)",
        "CSV, UTF-8, delimiter ';' (header)",
    ]
    for file in ("excel.csv", "utf8.csv"):
        (row,) = responses(warehouse, file)
        assert (row["needs"], row["respondent_organization"]) == ("Il manque l’année 2025 — données", "Mairie d'Évry")


# --- malformed files ------------------------------------------------------------------------------------------------


def _rows_with(row: int, column: str, value: str) -> list[list[str]]:
    """Three good rows (spreadsheet rows 2-4) with one cell replaced."""
    rows = [["20/11/2026", SIRENE, "4", "RAS", "", "", ""] for _ in range(3)]
    rows[row - 2][HEADER.index(column)] = value
    return rows


def _random_bytes() -> bytes:
    return random.Random(7).randbytes(3000)


# name -> (file name, file bytes, encoding declared, expected rows, expected columns, words of the error)
MALFORMED = {
    "cp1252 bytes": (
        "bad.csv",
        csv_text(_rows_with(3, NEEDS, "Données erronées")).encode("cp1252"),
        "utf-8",
        [1, 3],
        [NEEDS],
        ["not UTF-8", "CSV UTF-8", "encoding: cp1252", r'3 ("Donn\xe9es erron\xe9es")'],
    ),
    "latin-1 bytes": (
        "bad.csv",
        csv_text(_rows_with(4, ORG, "Conseil régional")).encode("latin-1"),
        "utf-8",
        [1, 4],
        [ORG],
        ["not UTF-8"],
    ),
    "UTF-16 with BOM": (
        "bad.csv",
        csv_text(_rows_with(2, NEEDS, "é")).encode("utf-16"),
        "utf-8",
        [],
        [],
        ["UTF-16", "byte order mark FF FE", "CSV UTF-8"],
    ),
    "UTF-16 without BOM, declared cp1252": (
        "bad.csv",
        csv_text(_rows_with(2, NEEDS, "é")).encode("utf-16-le"),
        "cp1252",
        [1, 2, 3, 4],
        [],
        ["control characters", "UTF-16 without byte order mark"],
    ),
    "UTF-16 without BOM, ASCII only": (
        "bad.csv",
        csv_text(_rows_with(2, NEEDS, "a")).replace("à", "a").replace("é", "e").encode("utf-16-le"),
        "utf-8",
        [1, 2, 3, 4],
        [],
        ["control characters"],
    ),
    "random bytes": ("bad.csv", _random_bytes(), "utf-8", [1], [], ["not UTF-8"]),
    "random bytes, declared cp1252": ("bad.csv", _random_bytes(), "cp1252", [1], [], ["neither UTF-8 nor cp1252"]),
    "not an xlsx": ("bad.xlsx", _random_bytes(), "utf-8", [], [], ["not a readable XLSX workbook"]),
    "legacy xls": ("bad.xls", b"\xd0\xcf\x11\xe0", "utf-8", [], [], ["unsupported file type .xls", ".xlsx"]),
    "missing column": (
        "bad.csv",
        csv_text(_rows_with(2, NEEDS, "x"), header=[SUBMITTED, DATASET, "Note", NEEDS, USE, ORG, "E-mail"]).encode(),
        "utf-8",
        [1],
        [NOTE, MAIL],
        ["not found in the header", "(satisfaction)", "(email)", '"Note"'],
    ),
    "unknown dataset": (
        "bad.csv",
        csv_text(_rows_with(3, DATASET, "https://data.gouv.fr/datasets/inconnu")).encode(),
        "utf-8",
        [3],
        [DATASET],
        ["column B", "(dataset)", "not a followed dataset", '3 ("https://data.gouv.fr/datasets/inconnu")'],
    ),
    "empty dataset": (
        "bad.csv",
        csv_text(_rows_with(4, DATASET, "")).encode(),
        "utf-8",
        [4],
        [DATASET],
        ["no dataset"],
    ),
    "satisfaction out of range": (
        "bad.csv",
        csv_text(_rows_with(2, NOTE, "7") + _rows_with(4, NOTE, "0")).encode(),
        "utf-8",
        [2, 7],
        [NOTE],
        ['column C "Note (1 à 5)" (satisfaction): not an integer from 1 to 5 in rows 2 ("7"), 7 ("0")'],
    ),
    "satisfaction not an integer": (
        "bad.csv",
        csv_text(_rows_with(3, NOTE, "4,5") + _rows_with(3, NOTE, "bien")).encode(),
        "utf-8",
        [3, 6],
        [NOTE],
        ['rows 3 ("4,5"), 6 ("bien")'],
    ),
    "date that does not parse": (
        "bad.csv",
        csv_text(_rows_with(2, SUBMITTED, "31/02/2026") + _rows_with(3, SUBMITTED, "hier")).encode(),
        "utf-8",
        [2, 6],
        [SUBMITTED],
        ["column A", "(submitted_at)", "not a date", "dd/mm/yyyy", '2 ("31/02/2026"), 6 ("hier")'],
    ),
    "empty date": (
        "bad.csv",
        csv_text(_rows_with(3, SUBMITTED, " ")).encode(),
        "utf-8",
        [3],
        [SUBMITTED],
        ["no date in row 3"],
    ),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_file_is_rejected_whole_and_the_others_ingest(warehouse: Path, surveys: Path, kind: str) -> None:
    name, data, encoding, rows, columns, words = MALFORMED[kind]
    write_config(
        surveys,
        [
            {"pattern": "bad.*", "encoding": encoding, "columns": COLUMNS},
            {"pattern": "enquete-*.csv", "columns": COLUMNS},
        ],
    )
    good_csv(surveys)
    (surveys / name).write_bytes(data)

    run = ingest(warehouse, surveys)

    assert outcomes(run) == {name: "rejected", "enquete-2026.csv": "ingested"}
    error = error_of(run, name)
    assert error.startswith(f"{name} rejected: ")
    for word in words:
        assert word in error
    for row in rows:
        assert str(row) in error
    for column in columns:
        assert json.dumps(column, ensure_ascii=False) in error
    digest = hashlib.sha256(data).hexdigest()
    assert query(warehouse, f"SELECT status, responses, error FROM {SURVEY_FILES_TABLE} WHERE file = ?", [name]) == [
        ("rejected", 0, error)
    ]
    assert query(warehouse, f"SELECT content_hash FROM {SURVEY_FILES_TABLE} WHERE file = ?", [name]) == [(digest,)]
    assert query(warehouse, f"SELECT count(*) FROM {SURVEY_RESPONSES_TABLE} WHERE file = ?", [name]) == [(0,)]
    assert len(responses(warehouse, "enquete-2026.csv")) == 3


def test_malformed_rows_are_listed_all_at_once(warehouse: Path, surveys: Path) -> None:
    write_config(surveys, [{"pattern": "*.xlsx", "columns": COLUMNS}])
    rows: list[list[object]] = [[dt.datetime(2026, 11, 20), SIRENE, 4, "", "", "", ""] for _ in range(15)]
    rows[0][2] = 9
    rows[3][1] = "inconnu"
    for row in rows[2:]:
        row[2] = 4.5
    write_xlsx(surveys / "survey.xlsx", HEADER, rows)
    error = error_of(ingest(warehouse, surveys), "survey.xlsx")
    assert 'column C "Note (1 à 5)" (satisfaction): not an integer from 1 to 5 in rows 2 ("9"), 4 ("4.5")' in error
    assert '12 ("4.5") and 4 more rows' in error
    assert 'column B "Quel jeu de données utilisez-vous ?" (dataset)' in error and '5 ("inconnu")' in error


# --- versions of a file ---------------------------------------------------------------------------------------------


def test_unchanged_file_is_skipped(warehouse: Path, surveys: Path) -> None:
    write_config(surveys, [{"pattern": "*.csv", "columns": COLUMNS}])
    good_csv(surveys)
    first = dt.datetime(2026, 11, 26, 8, tzinfo=dt.UTC)
    assert outcomes(ingest(warehouse, surveys, now=first)) == {"enquete-2026.csv": "ingested"}
    before = query(warehouse, f"SELECT * FROM {SURVEY_RESPONSES_TABLE} ORDER BY row_number")
    files_before = query(warehouse, f"SELECT * FROM {SURVEY_FILES_TABLE}")

    again = ingest(warehouse, surveys, now=first + dt.timedelta(days=1))

    assert outcomes(again) == {"enquete-2026.csv": "unchanged"}
    assert query(warehouse, f"SELECT * FROM {SURVEY_RESPONSES_TABLE} ORDER BY row_number") == before
    assert query(warehouse, f"SELECT * FROM {SURVEY_FILES_TABLE}") == files_before
    # force reads it again (after a change of mapping)
    assert outcomes(ingest(warehouse, surveys, force=True)) == {"enquete-2026.csv": "ingested"}


def test_changed_file_replaces_its_rows_and_a_rejected_version_keeps_them(
    warehouse: Path, surveys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(surveys, [{"pattern": "*.csv", "columns": COLUMNS}])
    path = good_csv(surveys)
    other = good_csv(surveys, "other.csv")
    v1 = path.read_bytes()
    ingest(warehouse, surveys)

    v2 = csv_text([["2026-12-01", BAN, "1", "Erreur dans les données", "", "", ""]]).encode()
    path.write_bytes(v2)
    run = ingest(warehouse, surveys)
    assert outcomes(run) == {"enquete-2026.csv": "ingested", "other.csv": "unchanged"}
    assert run.outcomes[0].replaced == hashlib.sha256(v1).hexdigest()
    (row,) = responses(warehouse, "enquete-2026.csv")
    assert (row["content_hash"], row["dataset_id"], row["satisfaction"]) == (hashlib.sha256(v2).hexdigest(), BAN, 1)
    assert len(responses(warehouse, "other.csv")) == 3

    v3 = csv_text([["2026-12-02", BAN, "11", "", "", "", ""]]).encode()  # malformed
    path.write_bytes(v3)
    assert outcomes(ingest(warehouse, surveys)) == {"enquete-2026.csv": "rejected", "other.csv": "unchanged"}
    assert [r["content_hash"] for r in responses(warehouse, "enquete-2026.csv")] == [hashlib.sha256(v2).hexdigest()]
    statuses = query(
        warehouse, f"SELECT content_hash, status FROM {SURVEY_FILES_TABLE} WHERE file = 'enquete-2026.csv'"
    )
    assert sorted(statuses) == sorted(
        [(hashlib.sha256(v).hexdigest(), s) for v, s in ((v1, "ingested"), (v2, "ingested"), (v3, "rejected"))]
    )
    # The rejected content is tried again (a later surveys.yaml may fix it) and rejected again: one row per content.
    assert outcomes(ingest(warehouse, surveys))["enquete-2026.csv"] == "rejected"
    assert query(warehouse, f"SELECT count(*) FROM {SURVEY_FILES_TABLE} WHERE file = 'enquete-2026.csv'") == [(3,)]

    # Back to the first content: it replaces the second again.
    path.write_bytes(v1)
    assert outcomes(ingest(warehouse, surveys))["enquete-2026.csv"] == "ingested"
    assert len(responses(warehouse, "enquete-2026.csv")) == 3

    # All the writes of a file are one transaction: a failure leaves the previous responses.
    def fail(*args: object) -> None:
        raise RuntimeError("disk full")

    path.write_bytes(v2)
    monkeypatch.setattr("usage_pipeline.surveys.ingest._record", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        ingest(warehouse, surveys)
    monkeypatch.undo()
    assert {r["content_hash"] for r in responses(warehouse, "enquete-2026.csv")} == {hashlib.sha256(v1).hexdigest()}
    assert len(responses(warehouse, "enquete-2026.csv")) == 3
    path.write_bytes(v1)

    # A removed file keeps its responses.
    other.unlink()
    assert outcomes(ingest(warehouse, surveys)) == {"enquete-2026.csv": "unchanged"}
    assert len(responses(warehouse, "other.csv")) == 3


def test_fixed_mapping_ingests_a_rejected_file(warehouse: Path, surveys: Path) -> None:
    wrong = {**COLUMNS, "satisfaction": "Note"}
    write_config(surveys, [{"pattern": "*.csv", "columns": wrong}])
    good_csv(surveys)
    assert outcomes(ingest(warehouse, surveys)) == {"enquete-2026.csv": "rejected"}
    write_config(surveys, [{"pattern": "*.csv", "columns": COLUMNS}])
    assert outcomes(ingest(warehouse, surveys)) == {"enquete-2026.csv": "ingested"}


# --- surveys.yaml ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("files: [pattern: *.csv", ["not valid YAML"]),
        ("- a\n- b\n", ["`files` key"]),
        ("files: {}\n", ["`files` must be a list"]),
        ("files: []\nfile: x\n", ["unknown top-level key(s) file"]),
        ("files:\n  - columns: {}\n", ["files[0].pattern"]),
        ("files:\n  - pattern: '../*.csv'\n    columns: {}\n", ["files[0].pattern", "inside the surveys folder"]),
        ("files:\n  - pattern: '*.csv'\n", ["files[0].columns"]),
        ("files:\n  - pattern: '*.csv'\n    colums: {}\n", ["files[0]: unknown key(s) colums"]),
        ("files:\n  - pattern: '*.csv'\n    encoding: latin-1\n    columns: {dataset: a}\n", ["files[0].encoding"]),
        ("files:\n  - pattern: '*.csv'\n    columns: {dataset: a, datset: b}\n", ["files[0].columns.datset"]),
        (
            "files:\n  - pattern: '*.csv'\n    columns: {dataset: a, needs: b}\n",
            ["files[0].columns", "submitted_at, satisfaction"],
        ),
        ("files:\n  - pattern: '*.csv'\n    columns: {dataset: '', submitted_at: b}\n", ["files[0].columns.dataset"]),
    ],
)
def test_malformed_config_names_the_file_and_key(surveys: Path, content: str, words: list[str]) -> None:
    surveys.mkdir()
    (surveys / "surveys.yaml").write_text(content, encoding="utf-8")
    with pytest.raises(SurveyConfigError) as raised:
        load_config(surveys)
    assert str(raised.value).startswith(f"{surveys / 'surveys.yaml'}: ")
    for word in words:
        assert word in str(raised.value)


def test_no_folder_or_no_config_is_nothing_to_do(warehouse: Path, surveys: Path) -> None:
    assert ingest(warehouse, surveys) == SurveyRun(None)
    surveys.mkdir()
    good_csv(surveys)
    assert ingest(warehouse, surveys) == SurveyRun(None)
    assert query(warehouse, f"SELECT count(*) FROM {SURVEY_RESPONSES_TABLE}") == [(0,)]  # the tables exist


# --- Dagster --------------------------------------------------------------------------------------------------------


def test_asset_reports_files_and_does_not_fail_on_rejected_ones(
    warehouse: Path, surveys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USAGE_PSEUDONYM_SALT", SALT)
    write_config(surveys, [{"pattern": "*.csv", "columns": COLUMNS}])
    good_csv(surveys)
    (surveys / "bad.csv").write_bytes(csv_text(_rows_with(3, NOTE, "9")).encode())
    asset = survey_responses
    assert asset.key == SURVEY_RESPONSES_KEY
    assert asset.op.pool == WAREHOUSE_POOL
    resources = {"warehouse": DuckDBResource(database=str(warehouse)), "data_dir": DataDir(path=str(surveys.parent))}
    instance = dg.DagsterInstance.ephemeral()

    result = dg.materialize([asset], resources=resources, instance=instance)

    assert result.success
    (materialization,) = result.asset_materializations_for_node(asset.op.name)
    metadata = materialization.metadata
    assert metadata["dagster/row_count"].value == 3
    assert (metadata["files_ingested"].value, metadata["files_rejected"].value) == (1, 1)
    files = metadata["files"].value
    assert files["enquete-2026.csv"]["status"] == "ingested" and files["enquete-2026.csv"]["responses"] == 3
    assert files["bad.csv"]["status"] == "rejected" and 'row 3 ("9")' in files["bad.csv"]["error"]
    warnings = [log.user_message for log in instance.all_logs(result.run_id) if log.level == logging.WARNING]
    assert [message for message in warnings if message.startswith("bad.csv rejected: ")]
    assert EMAIL not in json.dumps(files)

    again = dg.materialize([asset], resources=resources)
    files = again.asset_materializations_for_node(asset.op.name)[0].metadata["files"].value
    assert files["enquete-2026.csv"]["status"] == "unchanged"

    # A malformed surveys.yaml fails the asset with its message.
    (surveys / "surveys.yaml").write_text("files:\n  - pattern: '*.csv'\n", encoding="utf-8")
    failed = dg.materialize([asset], resources=resources, raise_on_error=False)
    assert not failed.success
    (failure,) = failed.get_step_failure_events()
    assert "surveys.yaml: files[0].columns" in failure.step_failure_data.user_failure_data.description


def test_asset_without_surveys_folder_succeeds(warehouse: Path, tmp_path: Path) -> None:
    resources = {
        "warehouse": DuckDBResource(database=str(warehouse)),
        "data_dir": DataDir(path=str(tmp_path / "nowhere")),
    }
    result = dg.materialize([survey_responses], resources=resources)
    assert result.success
    assert query(warehouse, f"SELECT count(*) FROM {SURVEY_FILES_TABLE}") == [(0,)]


def test_sensor_requests_a_run_once_per_new_content(surveys: Path) -> None:
    assert survey_files.name == SENSOR_NAME and survey_files.minimum_interval_seconds == 60

    def tick(cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(cursor=cursor, resources={"data_dir": DataDir(path=str(surveys.parent))})
        return survey_files(context)

    nothing = tick(None)
    assert not nothing.run_requests and nothing.skip_reason

    write_config(surveys, [{"pattern": "*.csv", "columns": COLUMNS}])
    path = good_csv(surveys)
    (surveys / "notes.txt").write_text("not a survey file", encoding="utf-8")
    first = tick(nothing.cursor)
    (request,) = first.run_requests
    assert request.job_name in (None, SURVEY_JOB_NAME)
    assert json.loads(first.cursor) == {
        "enquete-2026.csv": hashlib.sha256(path.read_bytes()).hexdigest(),
        "surveys.yaml": hashlib.sha256((surveys / "surveys.yaml").read_bytes()).hexdigest(),
    }

    same = tick(first.cursor)
    assert not same.run_requests and same.cursor == first.cursor
    # A lost cursor asks again with the same run key: Dagster does not launch it twice.
    assert tick(nothing.cursor).run_requests[0].run_key == request.run_key

    v1 = path.read_bytes()
    path.write_bytes(csv_text(CSV_ROWS[:1]).encode())
    changed = tick(first.cursor)
    (second,) = changed.run_requests
    assert second.run_key != request.run_key
    assert not tick(changed.cursor).run_requests

    path.write_bytes(v1)  # back to the first content: the warehouse holds the second, so it runs again
    (back,) = tick(changed.cursor).run_requests
    assert back.run_key not in (request.run_key, second.run_key)

    # surveys.yaml is watched too: a fixed mapping retries rejected files, a broken one fails a run with its message.
    (surveys / "surveys.yaml").write_text("files: [", encoding="utf-8")
    (broken,) = tick(changed.cursor).run_requests
    assert "surveys.yaml" in json.loads(tick(changed.cursor).cursor)
    assert broken.run_key not in (request.run_key, second.run_key, back.run_key)
    write_config(surveys, [{"pattern": "*.csv", "columns": COLUMNS}])

    good_csv(surveys, "enquete-2027.csv")
    (added,) = tick(json.dumps({**json.loads(changed.cursor), path.name: hashlib.sha256(v1).hexdigest()})).run_requests
    assert added.run_key not in (request.run_key, second.run_key, back.run_key)


def test_sensor_and_asset_load_in_definitions(warehouse: Path, surveys: Path) -> None:
    job = dg.define_asset_job(SURVEY_JOB_NAME, selection=[SURVEY_RESPONSES_KEY])
    defs = dg.Definitions(
        assets=[survey_responses],
        jobs=[job],
        sensors=[survey_files],
        resources={"warehouse": DuckDBResource(database=str(warehouse)), "data_dir": DataDir(path=str(surveys.parent))},
    )
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_sensor_def(SENSOR_NAME).job_name == SURVEY_JOB_NAME
    spec = defs.resolve_assets_def(SURVEY_RESPONSES_KEY)
    assert spec.group_names_by_key[SURVEY_RESPONSES_KEY] == "raw"
