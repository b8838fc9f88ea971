"""XLSX exports, read with openpyxl in read-only mode (rows streamed, defusedxml underneath): the
first sheet or a named one, the spreadsheet's own row numbers, typed cells turned into the text
a CSV export of them would hold. See starter/book/readers.py for the shared `Table`."""

from __future__ import annotations

import zipfile
from datetime import date, datetime, time
from pathlib import Path
from typing import Iterator

from starter.book.readers import FileProblem, Limits, SourceRow, Table


def cell_text(value: object) -> str | None:
    """A typed spreadsheet cell as the text a CSV export would hold: integral numbers without
    `.0` (ids typed as numbers), dates as ISO 8601, booleans as true/false."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, (date, time)):
        return value.isoformat()
    return str(value)


class XlsxTable(Table):
    """An XLSX workbook's sheet (the first unless named), read-only and streamed; rows named by
    the spreadsheet's row numbers (`file[sheet]:row` when a sheet was named)."""

    def __init__(self, path: Path, name: str, limits: Limits, sheet: str | None = None, header_row: int = 1):
        super().__init__(path, name, limits)
        try:
            with zipfile.ZipFile(path) as archive:
                inflated = sum(info.file_size for info in archive.infolist())
        except zipfile.BadZipFile:
            raise FileProblem(f"{name}:1: not an XLSX workbook (a damaged ZIP archive)") from None
        if inflated > limits.max_inflated_bytes:
            raise FileProblem(f"{name}:1: the workbook expands to {inflated:,} bytes; at most "
                              f"{limits.max_inflated_bytes:,}")
        import openpyxl  # uses defusedxml when installed (it is a dependency): no entity expansion

        try:
            self.workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
            raise FileProblem(f"{name}:1: not an XLSX workbook ({type(exc).__name__}: {exc})") from None
        names = self.workbook.sheetnames
        if sheet is not None and sheet not in names:
            self.close()
            raise FileProblem(f"{name}:1: no sheet {sheet!r} (sheets: {', '.join(names)})")
        if not names:
            self.close()
            raise FileProblem(f"{name}:1: the workbook has no sheet")
        self.sheet = sheet or names[0]
        self.name = f"{name}[{self.sheet}]" if sheet else name
        self.header_row = header_row
        self.total_rows = 0
        for values, line in self._records():
            if line >= header_row:
                self._set_headers(values, line)
                break
        else:
            raise FileProblem(f"{self.name}:1: the sheet is empty: the first row must name the columns")

    def _records(self) -> Iterator[tuple[list[str | None], int]]:
        ws = self.workbook[self.sheet]
        ws.reset_dimensions()  # a workbook's stated size is not trusted: rows are read as they are
        for line, cells in enumerate(ws.iter_rows(values_only=True), start=1):
            self.position = line
            if len(cells) > self.limits.max_columns and any(c is not None for c in cells[self.limits.max_columns:]):
                raise FileProblem(f"{self.name}:{line}: {len(cells)} columns; at most {self.limits.max_columns} "
                                  "are read")
            values = [cell_text(c) for c in cells[:self.limits.max_columns]]
            while values and values[-1] in (None, ""):
                values.pop()
            if values:
                yield values, line

    def rows(self) -> Iterator[SourceRow]:
        width = len(self.headers)
        for values, line in self._records():
            if line <= self.header_line:
                continue
            if len(values) < width:  # a spreadsheet stores no trailing empty cells
                values = values + [None] * (width - len(values))
            yield self._row(values, line)

    def close(self) -> None:
        workbook = getattr(self, "workbook", None)
        if workbook is not None:
            workbook.close()
            self.workbook = None
