"""CSV reports on disk: appending rows (header on a new file, refused when its columns differ,
fsync per write: a crash loses at most the row in flight) and reading them back, checked
against reports.schema. Knows files, columns and types, not what the rows mean."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.reports.schema import BENCH_COLUMNS, LATER_COLUMNS, LATER_DEFAULTS, Column

if TYPE_CHECKING:
    import pandas as pd


class ResultsSchemaError(ValueError):
    """A results file that does not match its declared schema."""


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
    if not new and csv_header(path) != fields:
        _widen(path, fields)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    if new:
        writer.writeheader()
    writer.writerows(rows)
    # One write of whole lines: an interrupted process leaves rows in or out, never half.
    with open(path, "a", newline="") as f:
        f.write(text.getvalue())
        f.flush()
        os.fsync(f.fileno())
    return count_rows(path)


def _widen(path: Path, fields: list[str]) -> None:
    """An existing file that lacks only columns added since it was written (LATER_DEFAULTS,
    LATER_COLUMNS) is rewritten with them, its rows given their defaults; any other difference
    is a ValueError, so two schemas never mix in one file."""
    header = csv_header(path)
    added = [f for f in fields if f not in header]
    if not _older(header, fields):
        raise ValueError(f"{path}: the existing file has other columns; write to another file")
    rows = read_rows(path, header)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows({**{f: LATER_DEFAULTS.get(f, "") for f in added}, **row} for row in rows)
    tmp = path.with_name(f".{path.name}.widen")
    tmp.write_text(text.getvalue(), newline="")
    os.replace(tmp, path)


def csv_header(path: Path) -> list[str]:
    """A CSV's column names ([] for a missing or empty file)."""
    try:
        with open(path, newline="") as f:
            return next(csv.reader(f), [])
    except FileNotFoundError:
        return []


def read_rows(path: str | Path, fields: Sequence[str]) -> list[dict[str, str]]:
    """A CSV's rows as written (strings, nothing converted), after checking that its columns
    are exactly `fields`; ResultsSchemaError when the file is missing or has other columns."""
    path = Path(path)
    if not path.is_file():
        raise ResultsSchemaError(f"{path}: no such results file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or ())
        if header != list(fields) and not _older(header, list(fields)):
            raise ResultsSchemaError(f"{path}: its columns differ from the schema's")
        added = {f: LATER_DEFAULTS.get(f, "") for f in fields if f not in header}
        return [{f: {**added, **row}[f] for f in fields} for row in reader]


def _older(header: list[str], fields: list[str]) -> bool:
    """`header` is `fields` as written before columns were added since (LATER_DEFAULTS, LATER_COLUMNS)."""
    added = [f for f in fields if f not in header]
    return [f for f in fields if f in header] == header and set(added) <= set(LATER_DEFAULTS) | LATER_COLUMNS


def read_table(path: str | Path, str_columns: Sequence[str] = ()) -> pd.DataFrame:
    """A CSV of any columns as pandas reads it (numbers inferred, empty cells missing;
    `str_columns` kept as text), for readers that need only some of its columns."""
    path = Path(path)
    if not path.is_file():
        raise ResultsSchemaError(f"{path}: no such results file")
    return _read_csv(path, keep_default_na=False, na_values=[""], dtype=dict.fromkeys(str_columns, str))


def _read_csv(path: Path, **options: Any) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsSchemaError(f"{path}: not a readable CSV ({exc})") from None


def count_rows(path: Path) -> int:
    """Data rows in a CSV report (0 when the file does not exist)."""
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False}


def read_results(path: str | Path, columns: Sequence[Column] = BENCH_COLUMNS) -> pd.DataFrame:
    """A results CSV as a DataFrame typed by `columns` (the benchmark schema by default).

    Raises ResultsSchemaError naming the file, the column and the first bad row when a
    column is missing, unexpected, or holds a value of the wrong type, so a half-edited or
    foreign file never reaches a plot. Nullable int and bool columns use pandas' nullable
    dtypes (Int64, boolean); empty strings stay empty.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ResultsSchemaError(f"{path}: no such results file")
    raw = _read_csv(path, dtype=str, keep_default_na=False)
    wanted = [c.name for c in columns]
    for c in columns:  # a nullable column added since the file was written reads as empty
        if c.nullable and c.name in LATER_COLUMNS and c.name not in raw.columns:
            raw[c.name] = ""
        elif c.name in LATER_DEFAULTS and c.name not in raw.columns:
            raw[c.name] = LATER_DEFAULTS[c.name]
    missing = [n for n in wanted if n not in raw.columns]
    extra = [n for n in raw.columns if n not in wanted]
    if missing or extra:
        parts = [f"missing columns {missing}"] if missing else []
        parts += [f"unexpected columns {extra}"] if extra else []
        raise ResultsSchemaError(f"{path}: {'; '.join(parts)} (schema: workbench.reports.schema)")
    return pd.DataFrame({c.name: _typed(path, c, raw[c.name]) for c in columns}, columns=wanted)


def _typed(path: Path, column: Column, values: pd.Series) -> pd.Series:
    """One column converted to its declared type, or a ResultsSchemaError at the first bad value."""
    import pandas as pd

    empty = values.str.strip() == ""
    if not column.nullable and empty.any():
        row = int(empty.idxmax()) + 2  # +1 for the header, +1 for 1-based line numbers
        raise ResultsSchemaError(f"{path}: column {column.name!r} is empty on line {row}; it must be set")
    if column.kind == "str":
        return values
    if column.kind == "bool":
        parsed = values.str.strip().str.lower().map(_BOOL_WORDS)
        bad = ~empty & parsed.isna()
        dtype = "boolean"
    else:
        parsed = pd.to_numeric(values.where(~empty), errors="coerce")
        bad = ~empty & parsed.isna()
        if column.kind == "int":
            bad |= ~empty & parsed.notna() & (parsed != parsed.round())
        dtype = "Int64" if column.kind == "int" else "float64"
    if bad.any():
        row = int(bad.idxmax())
        raise ResultsSchemaError(
            f"{path}: column {column.name!r} must hold {column.kind} values; "
            f"line {row + 2} has {values[row]!r}"
        )
    if column.kind == "int" and not column.nullable:
        dtype = "int64"
    if column.kind == "bool" and not column.nullable:
        dtype = "bool"
    return parsed.astype(dtype)
