"""Survey files as a header and rows of cells: CSV, with its encoding and delimiter decided explicitly, and XLSX.

CSV encoding, in this order (the choice is reported with the file's outcome):

1. A UTF-16 or UTF-32 byte order mark: rejected (re-export as CSV UTF-8).
2. A UTF-8 byte order mark: UTF-8 ("UTF-8 with BOM"); bytes that are not UTF-8 after it are rejected.
3. Valid UTF-8: UTF-8.
4. Not valid UTF-8, and the file's entry declares ``encoding: cp1252``: Windows-1252 (Excel's French "CSV
   (séparateur: point-virgule)"); bytes undefined in cp1252 (0x81, 0x8D, 0x8F, 0x90, 0x9D) are rejected.
   Without the declaration the file is rejected, naming the rows and columns holding the bytes that are not UTF-8.

The decoded text must hold no control characters other than tab, line breaks, vertical tab and form feed: a
UTF-16 export without byte order mark decodes as "valid" UTF-8 or cp1252 full of U+0000, and binary data
holds them too; such files are rejected.

Delimiter: among ``;``, ``,`` and tab, the one whose header row holds the most of the mapped column headers;
when several tie (a one-column mapping, or none found), ``csv.Sniffer`` decides among them, then the one giving
the most header fields. Quoting follows RFC 4180 (a quoted cell may span lines: it is still one row).

XLSX (.xlsx, .xlsm): the workbook's first sheet, header in row 1, cached values of formulas, read with openpyxl.

Rows are numbered as in a spreadsheet: the header is row 1, the first answer row 2.
"""

import codecs
import csv
import dataclasses
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath

import openpyxl

from usage_pipeline.surveys.config import FileSpec, normalize_header

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
XLSX_SUFFIXES = (".xlsx", ".xlsm")
DELIMITERS = (";", ",", "\t")
MAX_ROWS_LISTED = 10  # rows quoted per problem in an error; the rest are counted
MAX_VALUE_SHOWN = 40  # characters of a faulty value quoted in an error
MAX_HEADER_SHOWN = 120  # characters of a column header quoted in an error
MAX_PROBLEMS_LISTED = 10  # problems (kind of fault x column) in an error; the rest are counted
SNIFF_SAMPLE = 65536
REEXPORT = "re-export the file as CSV UTF-8 (or save it as .xlsx)"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_LOOSE_EMAIL = re.compile(r"[^\s\"'<>(),;]+@[^\s\"'<>(),;]+")  # in errors, whatever looks like one
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_UNDECODED = re.compile(r"[\udc80-\udcff]")  # bytes kept by the "surrogateescape" error handler
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def column_letter(index: int) -> str:
    """Spreadsheet letter of a 0-based column index: 0 -> A, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def shown(value: object, limit: int = MAX_VALUE_SHOWN) -> str:
    """A cell as quoted in an error: undecodable bytes and control characters as \\xNN, e-mails masked, shortened."""
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    text = _LOOSE_EMAIL.sub("[e-mail]", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f'"{text}"'


@dataclass
class Problem:
    """One kind of fault, in one column (or in the whole file), at some rows."""

    what: str
    column: str | None = None  # the header as written in the file
    letter: str | None = None  # its spreadsheet letter, when the column exists
    canonical: str | None = None  # the canonical field mapped to it
    cells: list[tuple[int, str | None]] = dataclasses.field(default_factory=list)  # (row, value as quoted, or None)

    def describe(self) -> str:
        """`column C "Note" (satisfaction): not an integer from 1 to 5 in rows 3 ("7"), 5 ("x")`."""
        label = ""
        if self.column is not None or self.letter is not None:
            name = shown(self.column, MAX_HEADER_SHOWN) if self.column else ""
            label = " ".join(part for part in ("column", self.letter, name) if part)
            label += f" ({self.canonical})" if self.canonical else ""
            label += ": "
        cells = self.cells[:MAX_ROWS_LISTED]
        listed = ", ".join(str(row) if value is None else f"{row} ({value})" for row, value in cells)
        more = len(self.cells) - MAX_ROWS_LISTED
        where = f" in row{'s' if len(self.cells) > 1 else ''} {listed}" if self.cells else ""
        where += f" and {more} more row{'s' if more > 1 else ''}" if more > 0 else ""
        return f"{label}{self.what}{where}"


class SurveyFileError(ValueError):
    """A survey file that cannot be ingested; the message names the file, the rows and the columns at fault."""

    def __init__(self, file: str, problems: list[Problem], advice: str | None = None) -> None:
        self.file = file
        self.problems = problems
        listed = "; ".join(problem.describe() for problem in problems[:MAX_PROBLEMS_LISTED])
        if len(problems) > MAX_PROBLEMS_LISTED:
            listed += f"; and {len(problems) - MAX_PROBLEMS_LISTED} more problems"
        super().__init__(f"{file} rejected: {listed}" + (f". {advice}" if advice else ""))

    @property
    def rows(self) -> list[int]:
        """The spreadsheet rows at fault (the header is row 1)."""
        return sorted({row for problem in self.problems for row, _ in problem.cells})

    @property
    def columns(self) -> list[str]:
        """The column headers at fault, as written in the file."""
        return list(dict.fromkeys(problem.column for problem in self.problems if problem.column is not None))


@dataclass(frozen=True)
class Sheet:
    """A survey file's header and rows, and how it was read."""

    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[object, ...]], ...]  # (spreadsheet row number, cells)
    format: str  # csv or xlsx
    encoding: str | None = None  # CSV: UTF-8, UTF-8 with BOM or cp1252
    delimiter: str | None = None  # CSV: ';', ',' or '\t'
    delimiter_rule: str | None = None  # CSV: header, sniffed or most header fields
    sheet_name: str | None = None  # XLSX: the sheet read

    def describe(self) -> str:
        """How the file was read, for logs and metadata."""
        if self.format == "xlsx":
            return f"XLSX, first sheet {self.sheet_name!r}"
        return f"CSV, {self.encoding}, delimiter {self.delimiter!r} ({self.delimiter_rule})"


def read_sheet(file: str, data: bytes, spec: FileSpec) -> Sheet:
    """The header and rows of a survey file by its extension (``file`` names it in errors)."""
    suffix = PurePosixPath(file).suffix.lower()
    if suffix in XLSX_SUFFIXES:
        return read_xlsx(file, data)
    if suffix in CSV_SUFFIXES:
        return read_csv(file, data, spec)
    advice = "save it as .xlsx or CSV UTF-8" if suffix in (".xls", ".ods") else "export it as CSV UTF-8 or .xlsx"
    supported = ", ".join(CSV_SUFFIXES + XLSX_SUFFIXES)
    what = f"unsupported file type {suffix or '(no extension)'} ({supported}): {advice}"
    raise SurveyFileError(file, [Problem(what)])


def decode_csv(file: str, data: bytes, encoding: str) -> tuple[str, str]:
    """The text and the encoding used (see the module docstring); undecodable bytes stay as lone surrogates."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            mark = bom.hex(" ").upper()
            what = f"the file is {name} (byte order mark {mark}), not UTF-8: {REEXPORT}"
            raise SurveyFileError(file, [Problem(what)])
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", "surrogateescape"), "UTF-8 with BOM"
    text = data.decode("utf-8", "surrogateescape")
    if encoding == "cp1252" and _UNDECODED.search(text):
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            return text, "neither UTF-8 nor cp1252"
    return text, "UTF-8"


def choose_delimiter(text: str, spec: FileSpec) -> tuple[str, str]:
    """The delimiter among ``DELIMITERS`` and the rule that chose it (header, sniffed, most header fields)."""
    wanted = {normalize_header(header) for header in spec.columns.values()}
    firsts: dict[str, list[str]] = {}
    for delimiter in DELIMITERS:
        try:
            firsts[delimiter] = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
        except csv.Error:
            firsts[delimiter] = []
    scores = {d: len(wanted & {normalize_header(cell) for cell in firsts[d]}) for d in DELIMITERS}
    tied = [d for d in DELIMITERS if scores[d] == max(scores.values())]
    if len(tied) == 1:
        return tied[0], "header"
    sample = text[:SNIFF_SAMPLE]
    if len(text) > SNIFF_SAMPLE and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters="".join(tied)).delimiter
    except csv.Error:
        sniffed = None
    if sniffed in tied:
        return sniffed, "sniffed"
    return max(tied, key=lambda d: len(firsts[d])), "most header fields"


def read_csv(file: str, data: bytes, spec: FileSpec) -> Sheet:
    """A CSV survey file: decoded, delimiter chosen, every cell checked for undecodable bytes and control chars."""
    text, encoding = decode_csv(file, data, spec.encoding)
    delimiter, rule = choose_delimiter(text, spec)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        records = list(reader)
    except csv.Error as error:
        raise SurveyFileError(file, [Problem(f"not readable as CSV near line {reader.line_num}: {error}")]) from None
    if not records:
        raise SurveyFileError(file, [Problem("empty file: no header row", cells=[(1, None)])])
    header = tuple(cell.strip() for cell in records[0])
    mapped = {normalize_header(header): name for name, header in spec.columns.items()}
    bad_bytes = "bytes that are not UTF-8" if encoding.startswith("UTF-8") else "bytes neither UTF-8 nor cp1252"
    control = "control characters (UTF-16 without byte order mark? binary data?)"
    garbled_header = any(_CONTROL.search(name) for name in header)  # UTF-16, binary: columns mean nothing
    problems: dict[tuple[str, int], Problem] = {}
    for number, record in enumerate(records, start=1):
        for index, cell in enumerate(record):
            for pattern, what in ((_UNDECODED, bad_bytes), (_CONTROL, control)):
                if not pattern.search(cell):
                    continue
                column = header[index] if index < len(header) else None
                field_name = mapped.get(normalize_header(column)) if column else None
                if what == control and garbled_header:  # one problem for the file, by row
                    problem = problems.setdefault((what, -1), Problem(what))
                    if problem.cells and problem.cells[-1][0] == number:
                        continue
                else:
                    problem = problems.setdefault(
                        (what, index), Problem(what, column, column_letter(index), field_name)
                    )
                quoted = what == bad_bytes and field_name != "email" and number > 1
                problem.cells.append((number, shown(cell) if quoted else None))
    if problems:
        advice = REEXPORT[0].upper() + REEXPORT[1:]
        if (
            encoding.startswith("UTF-8")
            and spec.encoding != "cp1252"
            and bad_bytes in {p.what for p in problems.values()}
        ):
            advice += ", or declare `encoding: cp1252` for it in surveys.yaml if it is a Windows Excel export"
        raise SurveyFileError(file, list(problems.values()), advice)
    return Sheet(
        header,
        tuple((number, tuple(record)) for number, record in enumerate(records[1:], start=2)),
        "csv",
        encoding=encoding,
        delimiter=delimiter,
        delimiter_rule=rule,
    )


def read_xlsx(file: str, data: bytes) -> Sheet:
    """The first sheet of an XLSX workbook; row 1 is the header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about styles and extensions it does not read
            workbook = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    except Exception as error:  # openpyxl raises zipfile, XML, KeyError, ValueError... on a damaged file
        what = f"not a readable XLSX workbook ({type(error).__name__}: {error}): save it again as .xlsx"
        raise SurveyFileError(file, [Problem(what)]) from None
    try:
        sheet = workbook.worksheets[0]
        rows = list(enumerate(sheet.iter_rows(values_only=True), start=1))
        name = sheet.title
    finally:
        workbook.close()
    if not rows:
        raise SurveyFileError(file, [Problem(f"the first sheet {name!r} is empty: no header row", cells=[(1, None)])])
    header = tuple("" if value is None else str(value).strip() for value in rows[0][1])
    return Sheet(header, tuple((number, tuple(values)) for number, values in rows[1:]), "xlsx", sheet_name=name)
