"""Replacing published files atomically: readers see the old version or the new one, never half of one."""

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` (same file system) to build the new version in.

    When the block ends without error, the new version replaces ``target``: a file in one `os.replace`, a folder
    by two renames (the old folder is removed after). On error ``target`` is untouched. The temporary path never
    outlives the block.
    """
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{TEMPORARY_SUFFIX}")
    try:
        yield temporary
        if temporary.is_dir():
            previous = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old{TEMPORARY_SUFFIX}")
            if target.exists():
                target.rename(previous)
            temporary.rename(target)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(temporary, target)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        for sibling in temporary.parent.glob(f"{temporary.name}*"):  # the file, and what a writer put beside it
            sibling.unlink(missing_ok=True)  # (a DuckDB file's .wal)


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text is UTF-8) to ``path`` through `staged`."""
    with staged(path) as temporary:
        if isinstance(content, str):
            temporary.write_text(content, encoding="utf-8")
        else:
            temporary.write_bytes(content)


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete what `staged` left in ``folder`` when its process was killed mid-way; returns what was removed.

    Call it only while no other process may be staging there (the pipeline runs one writer at a time).
    """
    removed = []
    for leftover in folder.glob(f".*{TEMPORARY_SUFFIX}*") if folder.is_dir() else ():  # and a DuckDB file's .wal
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed
