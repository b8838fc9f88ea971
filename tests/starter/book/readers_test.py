"""Streaming readers: CSV as CRMs and spreadsheets write it, XLSX, and hostile files."""

from __future__ import annotations

import zipfile
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pytest

from playbooks.crm_mapping import FieldRule
from starter.book.readers import FileProblem, Limits, open_table, sniff_delimiter
from starter.book.xlsx import cell_text

REAL = Path(__file__).resolve().parents[4] / "shared" / "real-inputs"
FIXTURES = Path(__file__).parent / "fixtures"


def col(*labels: str, type: str = "text") -> FieldRule:
    return FieldRule(columns=list(labels), type=type)


def values(path, rule: FieldRule, **kw) -> list[tuple[str, object]]:
    """(where, value) of every row for one column."""
    with open_table(path, **kw) as table:
        return [(r.where, r.lookup(rule)[0][1] if r.lookup and r.lookup(rule) else r.problem)
                for r in table.rows()]


def test_data_loader_extract_crlf_and_a_line_break_inside_a_field():
    path = REAL / "salesforce" / "dataloader" / "extract_Account.csv"
    rows = values(path, col("billingstreet"))
    # Northwind's street spans lines 2-3: the next record starts on line 4.
    assert rows == [("extract_Account.csv:2", "12 Harbour Row\nUnit 4"), ("extract_Account.csv:4", "Industriestraße 18"),
                    ("extract_Account.csv:5", "北区梅田3-1-1"), ("extract_Account.csv:6", "200 Seaport Blvd, Suite 410")]
    with open_table(path) as table:
        assert table.headers[0] == "ID" and table.delimiter == "," and table.count() == 4
        assert table.position == table.size  # read to the end: progress reaches 100%


def test_french_excel_resave_bom_semicolons_crlf():
    path = FIXTURES / "hubspot_fr" / "entreprises.csv"
    with open_table(path) as table:
        assert table.delimiter == ";"
        assert table.headers[0] == "ID de fiche d'informations"  # no byte-order mark left on it
    assert [v for _, v in values(path, col("Nom de l'entreprise"))] == [
        "Boulangeries Dupré SA", "Müller Maschinenbau AG", "Crème & Co"]


def test_labels_match_ignoring_case_and_spaces_and_the_first_label_found_wins():
    path = REAL / "hubspot" / "exports" / "companies-export.csv"
    assert values(path, col("  company NAME ", "Record ID"))[0] == ("companies-export.csv:2", "Northwind Traders Ltd")
    assert values(path, col("no such column"))[0][1] is None


@pytest.mark.parametrize("encoding, bom", [("utf-16", b""), ("utf-16-le", b""), ("utf-8", b""),
                                           ("utf-8", b"\xef\xbb\xbf")])
def test_utf16_and_utf8_exports_with_tabs(tmp_path, encoding, bom):
    path = tmp_path / "export.txt"
    path.write_bytes(bom + "Record ID\tCompany name\r\n1\tSakura 精機\r\n2\tÅsa AB\r\n".encode(encoding))
    assert values(path, col("Company name")) == [("export.txt:2", "Sakura 精機"), ("export.txt:3", "Åsa AB")]


def test_delimiter_sniffing_ignores_quoted_text():
    assert sniff_delimiter('"a;b;c","d"\n') == ","
    assert sniff_delimiter("a;b;c\n") == ";"
    assert sniff_delimiter("a|b|c\n") == "|"
    assert sniff_delimiter("only\n") == ","


def test_blank_lines_are_skipped_and_rows_keep_their_file_lines(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("id,name\n1,A\n\n2,B\n\n\n3,C\n")
    assert values(path, col("name")) == [("gaps.csv:2", "A"), ("gaps.csv:4", "B"), ("gaps.csv:7", "C")]


def test_a_short_or_long_row_is_refused_alone(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text('id,name,country\n1,A,DE\n2,B\n3,C,FR,extra\n4,D,GB\n')
    rows = values(path, col("name"))
    assert rows[0] == ("ragged.csv:2", "A") and rows[3] == ("ragged.csv:5", "D")
    short, long = rows[1][1], rows[2][1]
    assert (short.where, short.column) == ("ragged.csv:3", "country")
    assert "2 values but the header has 3" in short.reason
    assert long.where == "ragged.csv:4" and "4 values" in long.reason


def test_an_unclosed_quote_swallows_the_rest_and_says_so(tmp_path):
    path = tmp_path / "unclosed.csv"
    path.write_text('id,name\n1,"A\n2,B\n3,C\n')
    (row,) = values(path, col("name"))
    assert row[0] == "unclosed.csv:2" and "never closed" in row[1].reason


def test_a_runaway_value_stops_the_file_at_its_line(tmp_path):
    path = tmp_path / "runaway.csv"
    path.write_text('id,name\n1,A\n2,"' + "x" * 140_000 + "\n")
    with pytest.raises(FileProblem, match=r"runaway.csv:3: a value runs on .* a quote is not closed"):
        with open_table(path) as table:
            table.count()


def test_an_oversized_value_is_refused_with_its_column(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("id,name\n1," + "y" * 50 + "\n2,ok\n")
    rows = values(path, col("name"), limits=Limits(max_cell_chars=40))
    assert rows[0][1].column == "name" and "50 characters; at most 40" in rows[0][1].reason
    assert rows[1] == ("big.csv:3", "ok")


def test_text_that_is_not_utf8_names_the_line_and_another_encoding_reads_it(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("id,name\n1,Caf\u00e9 Noir\n".encode("cp1252"))
    with pytest.raises(FileProblem, match=r"latin.csv:2: not UTF-8 text .* CSV UTF-8"):
        with open_table(path) as table:
            table.count()
    assert values(path, col("name"), encoding="cp1252") == [("latin.csv:2", "Café Noir")]
    with pytest.raises(FileProblem, match="'klingon' is not a text encoding"):
        open_table(path, encoding="klingon")


@pytest.mark.parametrize("content, says", [
    (b"", "the file is empty"),
    (b"\n\n", "the file is empty"),
    (b",,,\n1,2,3,4\n", "the header row is empty"),
    (b"\x00\x01\x02binary\x00" * 20, "not a text file"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "Excel 97-2003"),
    (b"PK\x03\x04 not really a zip", "not an XLSX workbook"),
])
def test_files_that_are_not_exports(tmp_path, content, says):
    path = tmp_path / "upload.csv"
    path.write_bytes(content)
    with pytest.raises(FileProblem, match=says):
        open_table(path)


def test_limits_on_size_and_columns(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(30)) + "\n" + ",".join("1" * 30) + "\n")
    with pytest.raises(FileProblem, match="wide.csv: .* bytes; at most 10"):
        open_table(path, limits=Limits(max_bytes=10))
    with pytest.raises(FileProblem, match="wide.csv:1: 30 columns; at most 20"):
        open_table(path, limits=Limits(max_columns=20))
    with pytest.raises(FileProblem, match="no such file"):
        open_table(tmp_path / "missing.csv")


def test_a_title_row_above_the_header(tmp_path):
    path = tmp_path / "template.csv"
    path.write_text("Accounts export - Q3\nid,name\n1,A\n")
    assert values(path, col("name"), header_row=2) == [("template.csv:3", "A")]


# -- XLSX -------------------------------------------------------------------------------------
def workbook(path: Path, sheets: dict[str, list[list]]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def test_xlsx_typed_cells_become_export_text(tmp_path):
    path = workbook(tmp_path / "companies.xlsx", {"Companies": [
        ["Record ID", "Company name", "Renewal Date", "Current ARR", "Customer", "Employees"],
        [18413070045, "Northwind Traders Ltd", datetime(2027, 9, 30), 120000.0, True, 320],
        [1.8413078676e10, "Müller & Söhne", date(2027, 1, 31), 85000.5, False, None],
    ]})
    with open_table(path) as table:
        rows = list(table.rows())
        assert table.count() == 2
    assert [r.where for r in rows] == ["companies.xlsx:2", "companies.xlsx:3"]
    first = {h: rows[0].lookup(col(h))[0][1] for h in ("Record ID", "Renewal Date", "Current ARR", "Customer")}
    assert first == {"Record ID": "18413070045", "Renewal Date": "2027-09-30", "Current ARR": "120000",
                     "Customer": "true"}
    assert rows[1].lookup(col("Record ID"))[0][1] == "18413078676"  # an id typed as a float keeps no ".0"
    assert rows[1].lookup(col("Employees"))[0][1] is None  # trailing empty cells are not stored by Excel


def test_xlsx_named_sheet_title_row_and_gaps(tmp_path):
    path = workbook(tmp_path / "book.xlsx", {
        "Read me": [["This workbook holds our accounts"]],
        "Accounts": [["Accounts as of 2026-11-30"], ["Account ID", "Account Name"], ["GS-1", "Redwood"], [],
                     ["GS-2", "Alpenglow"]],
    })
    assert values(path, col("Account Name"), sheet="Accounts", header_row=2) == [
        ("book.xlsx[Accounts]:3", "Redwood"), ("book.xlsx[Accounts]:5", "Alpenglow")]
    with pytest.raises(FileProblem, match=r"no sheet 'Contacts' \(sheets: Read me, Accounts\)"):
        open_table(path, sheet="Contacts")
    with pytest.raises(FileProblem, match="a CSV file"):
        open_table(FIXTURES / "cs_template" / "accounts.csv", sheet="Accounts")


def test_an_xlsx_that_inflates_too_much_is_refused(tmp_path):
    path = workbook(tmp_path / "bomb.xlsx", {"S": [["id", "name"], [1, "x" * 5000]]})
    with zipfile.ZipFile(path) as z:
        inflated = sum(i.file_size for i in z.infolist())
    with pytest.raises(FileProblem, match="expands to"):
        open_table(path, limits=Limits(max_inflated_bytes=inflated - 1))
    assert values(path, col("name"))[0][1] == "x" * 5000


def test_cell_text():
    assert [cell_text(v) for v in (None, True, 3, 3.0, 2.5, datetime(2027, 1, 2, 10, 30), date(2027, 1, 2), "x")] == [
        None, "true", "3", "3", "2.5", "2027-01-02 10:30:00", "2027-01-02", "x"]
