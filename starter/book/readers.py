"""Streaming readers of CRM export files: CSV as the CRMs and spreadsheets write it, and XLSX.

`open_table(path)` looks at the file's first bytes (a ZIP is XLSX, anything else is read as
CSV) and returns a `Table`: its header labels, and an iterator of `SourceRow`s, one per
record, each with a lookup for `starter.book.records` and where it is (`file:row`). Nothing
is held but the current record, so a file of any length costs the same memory.

CSV: UTF-8 with or without a byte-order mark, UTF-16 (Excel's "Unicode text" and some CRM
exports), `,` `;` tab or `|` as the delimiter (sniffed from the header line), CRLF or LF,
line breaks inside quoted fields, every value quoted or not. The row of a record is the
file's line where the record starts (a record with an embedded line break spans two lines),
as a text editor shows it. XLSX (openpyxl, read-only): the first sheet or a named one, the
spreadsheet's own row numbers; typed cells (numbers, dates, booleans) become the text a CSV
export of them would hold.

Hostile files are refused with `file:line: message` (`FileProblem`): too large, too many
columns, not text, a value longer than a spreadsheet cell can be, a ZIP that inflates too
much. A single malformed record (more or fewer values than the header has columns, an
oversized value) is refused on its own (`SourceRow.problem`) and the rest is read.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

from playbooks.crm_mapping import FieldRule
from starter.book.records import Lookup, Problem

XLSX_MAGIC = b"PK\x03\x04"
XLS_MAGIC = b"\xd0\xcf\x11\xe0"  # Excel 97-2003 (OLE2)
DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class Limits:
    """What a file may hold. `max_bytes` is the file as stored; `max_cell_chars` is Excel's own
    limit for a cell (32,767 characters); `max_inflated_bytes` bounds what an XLSX (a ZIP)
    may expand to."""

    max_bytes: int = 512 * 1024 * 1024
    max_columns: int = 500
    max_cell_chars: int = 32_767
    max_inflated_bytes: int = 2 * 1024 * 1024 * 1024


class FileProblem(ValueError):
    """A file that cannot be read at all; the message is `file:line: what is wrong`."""


class SourceRow(NamedTuple):
    """One record: a lookup of its values by column label, where it is (`file:row`), and the
    reason it cannot be read when it cannot (then `lookup` is None)."""

    lookup: Lookup | None
    where: str
    problem: Problem | None = None


class Table:
    """An open export file. `headers` are the labels as written; `rows()` streams the records
    (each call starts again from the top); `size` and `position` (bytes) show progress."""

    def __init__(self, path: Path, name: str, limits: Limits):
        self.path, self.name, self.limits = path, name, limits
        self.size = path.stat().st_size
        self.headers: list[str] = []
        self.header_line = 1
        self.position = 0
        self._index: dict[str, tuple[int, str]] = {}
        self._resolved: dict[int, tuple] = {}  # id(rule) -> (rule, its (column index, header)s)

    # -- columns ------------------------------------------------------------------------------
    def _set_headers(self, labels: list[str], line: int) -> None:
        if len(labels) > self.limits.max_columns:
            raise FileProblem(f"{self.name}:{line}: {len(labels)} columns; at most {self.limits.max_columns} are read")
        self.headers = [(label or "").replace("\ufeff", "").strip() for label in labels]
        self.header_line = line
        if not any(self.headers):
            raise FileProblem(f"{self.name}:{line}: the header row is empty: the first row must name the columns")
        self._index, self._resolved = {}, {}
        for i, label in enumerate(self.headers):
            if label:
                self._index.setdefault(label.lower(), (i, label))  # a repeated label: the first column counts

    def has_column(self, rule: FieldRule) -> str | None:
        """The header that `rule` reads, or None when the file has none of its labels."""
        for label in rule.columns:
            hit = self._index.get(label.strip().lower())
            if hit is not None:
                return hit[1]
        return None

    @property
    def repeated_headers(self) -> list[str]:
        seen: set[str] = set()
        repeated = []
        for label in self.headers:
            if label and label.lower() in seen:
                repeated.append(label)
            seen.add(label.lower())
        return repeated

    def _lookup(self, values: list) -> Lookup:
        index, resolved = self._index, self._resolved

        def lookup(rule: FieldRule) -> list[tuple[str, str | None]]:
            cached = resolved.get(id(rule))
            if cached is None or cached[0] is not rule:
                columns = []
                for label in rule.columns:
                    hit = index.get(label.strip().lower())
                    if hit is not None:
                        columns.append(hit)
                        if rule.type != "owner":
                            break  # the first label the file has; an owner reads every column it names
                # The rule is kept with its columns, so that its id cannot be another rule's later.
                cached = resolved[id(rule)] = (rule, columns)
            return [(header, values[i]) for i, header in cached[1]]

        return lookup

    def _row(self, values: list, line: int) -> SourceRow:
        where = f"{self.name}:{line}"
        width = len(self.headers)
        if len(values) != width:
            column = self.headers[len(values)] if len(values) < width else f"(after {self.headers[-1]})"
            return SourceRow(None, where, Problem(where, column, f"{len(values)} values but the header has {width} "
                                                  "columns: a value is missing, or a quote is not closed"))
        limit = self.limits.max_cell_chars
        try:
            longest = max(map(len, values), default=0)  # CSV cells are all text
        except TypeError:  # a spreadsheet's empty cells are None
            longest = max((len(value) for value in values if value is not None), default=0)
        if longest > limit:
            i, value = next((i, value) for i, value in enumerate(values) if len(value or "") > limit)
            return SourceRow(None, where, Problem(where, self.headers[i], f"a value of {len(value):,} characters; "
                                                  f"at most {limit:,}"))
        return SourceRow(self._lookup(values), where)

    def rows(self) -> Iterator[SourceRow]:
        raise NotImplementedError

    def _records(self) -> Iterator[tuple[list, int]]:
        raise NotImplementedError

    def count(self) -> int:
        """Read the whole file once without taking anything from it: the number of records, or
        FileProblem for a file that breaks further down (so that an import can refuse it before
        it has written anything)."""
        return sum(1 for _, line in self._records() if line > self.header_line)

    def close(self) -> None:
        pass

    def __enter__(self) -> "Table":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


# -- CSV ---------------------------------------------------------------------------------------
class _Counting(io.RawIOBase):
    """A binary file that counts the bytes read from it (for progress)."""

    def __init__(self, raw, table: Table):
        self.raw, self.table = raw, table

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.table.position += n or 0
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def sniff_encoding(head: bytes) -> str:
    """The codec of a text file from its first bytes: UTF-16 by its byte-order mark (or by the
    zero bytes of ASCII text in UTF-16), else UTF-8 with an optional byte-order mark."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(head) >= 4 and head[1] == 0 and head[3] == 0 and head[0] and head[2]:
        return "utf-16-le"
    if len(head) >= 4 and head[0] == 0 and head[2] == 0 and head[1] and head[3]:
        return "utf-16-be"
    return "utf-8-sig"


def sniff_delimiter(line: str) -> str:
    """The delimiter of a header line: the candidate found most often outside quotes (`,` when
    none is: a file of one column)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


class CsvTable(Table):
    """A CSV (or tab- or semicolon-separated) export: the encoding sniffed from its first bytes
    unless given, the delimiter from its header line; rows named by the line they start on."""

    def __init__(self, path: Path, name: str, limits: Limits, header_row: int = 1, encoding: str | None = None):
        super().__init__(path, name, limits)
        with path.open("rb") as fh:
            head = fh.read(4096)
        if b"\x00" in head and not encoding and sniff_encoding(head) == "utf-8-sig":
            raise FileProblem(f"{name}:1: this is not a text file (CSV) nor an XLSX workbook")
        if encoding:
            try:
                encoding = codecs.lookup(encoding).name
            except LookupError:
                raise FileProblem(f"{name}: {encoding!r} is not a text encoding (e.g. utf-8, cp1252, latin-1)"
                                  ) from None
        self.encoding = encoding or sniff_encoding(head)
        self.header_row = header_row
        self.delimiter = ","
        for values, line in self._records():  # the header, so that headers are known once opened
            if line >= header_row:
                self._set_headers(values, line)
                break
        else:
            raise FileProblem(f"{name}:1: the file is empty: the first row must name the columns")

    def _records(self) -> Iterator[tuple[list[str], int]]:
        """(values, line where the record starts) for every record, the header included. A last
        record whose quote never closes comes as an `Unclosed` list."""
        self.position = 0
        self._line = 0  # physical lines decoded so far
        raw = io.BufferedReader(_Counting(self.path.open("rb", buffering=0), self), 65536)
        lines = self._decoded(raw)
        record_lines: list[str] = []

        def feed() -> Iterator[str]:
            for text in lines:
                record_lines.append(text)
                yield text

        line, pending = 0, None
        try:
            first = next(lines, "")
            self.delimiter = sniff_delimiter(first)
            record_lines.append(first)
            reader = csv.reader(_chain(first, feed()), delimiter=self.delimiter)
            for values in reader:
                start, line = line + 1, reader.line_num
                quotes = sum(text.count('"') for text in record_lines)
                record_lines.clear()
                if pending is not None:
                    yield pending[0], pending[1]
                    pending = None
                if values:  # a blank line is no record
                    pending = (values, start, quotes % 2 == 1)
            if pending is not None:
                values, start, odd = pending
                # Only the last record can tell: the csv module reads an unclosed quote to the end of the file.
                yield (Unclosed(values) if odd else values), start
        except UnicodeDecodeError as exc:
            raise FileProblem(f"{self.name}:{self._line + 1}: not {self._codec_name()} text (byte {exc.start + 1} of "
                              "the line cannot be decoded): export the file as CSV UTF-8, or give its encoding"
                              ) from None
        except UnicodeError as exc:
            raise FileProblem(f"{self.name}:{self._line + 1}: not {self._codec_name()} text: {exc}") from None
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise FileProblem(f"{self.name}:{line + 1}: a value runs on for more than {csv.field_size_limit():,} "
                                  "characters: a quote is not closed") from None
            raise FileProblem(f"{self.name}:{line + 1}: not a CSV file: {exc}") from None
        finally:
            raw.close()

    def _decoded(self, raw: io.BufferedReader) -> Iterator[str]:
        """The file's lines as text. UTF-8 and single-byte encodings are decoded line by line, so
        a byte that does not decode is reported on its own line; UTF-16 through a text wrapper."""
        if self.encoding.startswith(("utf-16", "utf-32")):
            text = io.TextIOWrapper(raw, encoding=self.encoding, newline="", errors="strict")
            for chunk in text:
                self._line += 1
                yield chunk
            return
        first_codec = self.encoding
        codec = "utf-8" if self.encoding == "utf-8-sig" else self.encoding
        for data in raw:
            text = data.decode(first_codec if self._line == 0 else codec)
            self._line += 1
            yield text

    def _codec_name(self) -> str:
        return "UTF-16" if self.encoding.startswith("utf-16") else "UTF-8" if self.encoding.startswith("utf-8") \
            else self.encoding

    def rows(self) -> Iterator[SourceRow]:
        for values, line in self._records():
            if line <= self.header_line:
                continue
            if isinstance(values, Unclosed):
                where = f"{self.name}:{line}"
                yield SourceRow(None, where, Problem(where, "", "a quote opened in this record is never closed: the "
                                                     "rest of the file was read as one value"))
                continue
            yield self._row(values, line)


class Unclosed(list):
    """The values of a last record whose quote never closed."""


def _chain(first: str, rest: io.TextIOWrapper) -> Iterator[str]:
    if first:
        yield first
    yield from rest


# -- opening -----------------------------------------------------------------------------------
def open_table(path: Path | str, *, name: str | None = None, sheet: str | None = None, header_row: int = 1,
               encoding: str | None = None, limits: Limits = Limits()) -> Table:
    """The export at `path`, its headers read. `name` is how rows are named (`name:row`; the
    file's name by default); `sheet` picks an XLSX sheet (the first by default); `header_row`
    is the row that names the columns (rows above it are a title). Raises FileProblem."""
    path = Path(path)
    name = name or path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise FileProblem(f"{name}: no such file") from None
    except IsADirectoryError:
        raise FileProblem(f"{name}: a folder, not a file") from None
    except OSError as exc:
        raise FileProblem(f"{name}: cannot be read: {exc.strerror}") from None
    if size > limits.max_bytes:
        raise FileProblem(f"{name}: {size:,} bytes; at most {limits.max_bytes:,} are read")
    if magic == XLSX_MAGIC:
        from starter.book.xlsx import XlsxTable

        return XlsxTable(path, name, limits, sheet, header_row)
    if magic == XLS_MAGIC:
        raise FileProblem(f"{name}:1: an Excel 97-2003 workbook (.xls): save it as XLSX or CSV UTF-8")
    if sheet is not None:
        raise FileProblem(f"{name}:1: a sheet was named, but this is a CSV file, not an XLSX workbook")
    return CsvTable(path, name, limits, header_row, encoding)
