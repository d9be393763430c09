"""events.csv: parsed into one row per event and dataset; a malformed file names its rows and columns."""

import datetime as dt
from pathlib import Path

import pytest

from usage_pipeline.ingest.events import parse_events
from usage_pipeline.ingest.producer_csv import ProducerFileError

KNOWN = {"5ff5e6e99724cb8fff59a5be", "5b7ffc618b4c4169d30727e0"}


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "events.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_events_one_row_per_dataset(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeffdate;title;kind;datasets\n"
        "2026-10-02;Atelier SIRENE;Workshop;5b7ffc618b4c4169d30727e0\n"
        "15/11/2026;Lettre d'information n°12;newsletter;5ff5e6e99724cb8fff59a5be, 5b7ffc618b4c4169d30727e0\n",
    )
    events = parse_events(path, KNOWN)
    assert [(e.event_date, e.kind, e.dataset_id, e.source_row) for e in events] == [
        (dt.date(2026, 10, 2), "workshop", "5b7ffc618b4c4169d30727e0", 2),
        (dt.date(2026, 11, 15), "newsletter", "5ff5e6e99724cb8fff59a5be", 3),
        (dt.date(2026, 11, 15), "newsletter", "5b7ffc618b4c4169d30727e0", 3),
    ]


def test_malformed_rows_are_all_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "date,title,kind,datasets\n"
        "2026-13-01,Hackathon,hackathon,5ff5e6e99724cb8fff59a5be\n"
        "2026-10-01,,webinar,5ff5e6e99724cb8fff59a5be\n"
        "2026-10-01,Webinaire,webinar,000000000000000000000000\n",
    )
    with pytest.raises(ProducerFileError) as error:
        parse_events(path, KNOWN)
    message = str(error.value)
    assert str(path) in message
    assert "row 2, column date: '2026-13-01' is not a date" in message
    assert "row 3, column title: empty" in message
    assert "row 4, column datasets: ['000000000000000000000000'] are not followed datasets" in message


def test_missing_column_and_encoding(tmp_path: Path) -> None:
    with pytest.raises(ProducerFileError, match=r"missing column\(s\) \['datasets'\]"):
        parse_events(write(tmp_path, "date,title,kind\n2026-10-01,A,b\n"), KNOWN)
    with pytest.raises(ProducerFileError, match="not UTF-8"):
        parse_events(write(tmp_path, "date,title,kind,datasets\n2026-10-01,Réunion,x,y\n", "latin-1"), KNOWN)
