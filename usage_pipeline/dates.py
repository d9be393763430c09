"""Month arithmetic on `YYYY-MM` keys, the month format of the metrics API and of every monthly table."""

import datetime as dt


def month_index(day: dt.date) -> int:
    """A month as a number: consecutive months differ by one (``year * 12 + month - 1``)."""
    return day.year * 12 + day.month - 1


def month_key_of_index(index: int) -> str:
    """``YYYY-MM`` of a `month_index`."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_key(day: dt.date, months_back: int = 0) -> str:
    """``YYYY-MM`` of the month ``months_back`` months before the month of ``day``."""
    return month_key_of_index(month_index(day) - months_back)
