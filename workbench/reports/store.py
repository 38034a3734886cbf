"""Appending rows to CSV reports: header on a new file, a refusal on a file whose
columns differ, fsync after each write so a crash loses at most the row in flight.

Knows files and columns, not what the rows mean.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def append_rows(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Append `rows` (keys exactly `fields`) to `path`; returns the data rows now in the file.

    Raises ValueError when the file already holds other columns, or a row has keys
    outside `fields`, so two schemas never mix in one file.
    """
    fields = list(fields)
    rows = list(rows)
    for row in rows:
        extra = set(row) - set(fields)
        if extra:
            raise ValueError(f"{path}: row has columns outside the schema: {sorted(extra)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != fields:
            raise ValueError(f"{path}: the existing file has other columns; write to another file")
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    return count_rows(path)


def count_rows(path: Path) -> int:
    """Data rows in a CSV report (0 when the file does not exist)."""
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)
