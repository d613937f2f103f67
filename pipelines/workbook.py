"""Excel workbooks (.xlsx) as deliveries: the first sheet, streamed, as the CSV text the CSV path stages.

`open_workbook(path, contract)` returns the same `(TextFormat, pieces)` as `decode.open_text`: the
header found on the sheet and its data rows as UTF-8 CSV text (comma-separated, NFC, LF), so that
staging, COPY, the checked pass and the quarantine are the CSV path's. Rows are counted from the
header like CSV data rows; empty rows are skipped like blank lines.

Memory does not grow with the sheet. An .xlsx is a zip of XML parts; the sheet part is
decompressed and parsed in 1 MB pieces by expat (the C parser of the standard library), and rows
are turned into CSV text as they complete. The shared-string table (the text cells of a workbook
Excel saved) is the one part that must be looked up at random: kept in a list while small, and in
a temporary file indexed by offsets when large (`SPILL_STRINGS_BYTES`). python-calamine, though
faster, reads the whole sheet into memory before it yields a row (1.4 GB for a million 14-column
rows, measured); the tests use it as an independent reader to check this one.

What a cell becomes (the text an office would have put in a CSV export):
- text as is; a formula's cached result; an error value as shown (`#N/A`); TRUE / FALSE;
- a date cell (a number with a date format, or an ISO date cell) `dd/mm/yyyy`, with ` HH:MM:SS`
  when it has a time of day; a `timestamp` column always gets the time, a `date` column never;
- a number: an integral one without a decimal part (`1000000000.0` -> `1000000000`), others with a
  decimal comma (`125,5`), as the agency spec writes decimals;
- a number in a fixed-width code column is padded with the zeros a number cannot hold: a ward code
  typed as `4` is `00004`, a personal ID `1090000001` is `001090000001`, a tax code `100109106`
  is `0100109106` (then checked like any other value, check digit included). A VSIC code is padded
  to 4 digits only: a 5-digit code starting with 0 typed as a number cannot be told from a 4-digit one.

The header is the first row, among the first `HEADER_SEARCH_ROWS` non-empty rows, that names every
required column of the contract, so a title row (or several) above it is skipped; failing that,
the row naming the most of the contract's columns (the ingest then says which required ones are
missing). A workbook that cannot be read gets a `Rejection` whose reason a clerk can act on.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import mmap
import posixpath
import tempfile
import unicodedata
import zipfile
import zlib
from array import array
from typing import Iterator
from xml.etree import ElementTree
from xml.parsers import expat

from .decode import TextFormat
from .delivery import Rejection

CHUNK = 1 << 20
HEADER_SEARCH_ROWS = 20
SPILL_STRINGS_BYTES = 64 << 20      # a shared-string part bigger than this (uncompressed) goes to disk
ROWS_PER_PIECE = 4096
MAX_COLUMNS = 16384                 # XFD: the last column of a worksheet

# OOXML namespaces: transitional (what Excel writes) and strict
MAIN_NS = ("http://schemas.openxmlformats.org/spreadsheetml/2006/main",
           "http://purl.oclc.org/ooxml/spreadsheetml/main")
REL_NS = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships",
          "http://purl.oclc.org/ooxml/officeDocument/relationships")
PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"

# Fixed-width codes of the contracts' column types: a number in such a column lost its leading zeros
CODE_WIDTHS = {"ward_code": 5, "province_code": 2, "personal_id": 12, "tax_code": 10, "vsic": 4}
DATE_TYPES = {"date": "date", "partial_date": "date", "timestamp": "timestamp"}

# Excel's built-in number formats that show dates or times (ECMA-376 18.8.30; 27-36 and 50-58 are
# the East Asian date formats)
BUILTIN_DATE_FORMATS = set(range(14, 18)) | {22} | set(range(27, 37)) | set(range(50, 59))
BUILTIN_TIME_FORMATS = {18, 19, 20, 21, 45, 46, 47}

OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
EPOCH_1900 = dt.date(1899, 12, 30)     # serial 61 = 1900-03-01 (Excel counts a 29 February 1900)
EPOCH_1904 = dt.date(1904, 1, 1)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _column_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def column_letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


# ------------------------------------------------------------------------------------------ parts

class _Book:
    """The package: where the first sheet, its shared strings and styles are; the date system."""

    def __init__(self, path):
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head.startswith(OLE2):
            raise Rejection("the file is an Excel 97-2003 workbook (.xls) or a password-protected workbook: "
                            "save it as an Excel Workbook (.xlsx) without a password, or as CSV")
        if not head.startswith(b"PK"):
            raise Rejection("the file is not an Excel workbook (.xlsx): it is not a zip package"
                            + (" (it looks like text: if it is a CSV file, name it .csv)" if _looks_like_text(path)
                               else ""))
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise Rejection(f"the file is not a readable Excel workbook (.xlsx): the zip package is damaged ({exc})") from None
        try:
            self._read_structure()
        except BaseException:
            self.zip.close()
            raise

    def close(self) -> None:
        self.zip.close()

    def _xml(self, member: str) -> ElementTree.Element:
        try:
            with self.zip.open(member) as fh:
                return ElementTree.parse(fh).getroot()
        except KeyError:
            raise Rejection(f"the workbook is incomplete: its part {member} is missing") from None
        except ElementTree.ParseError as exc:
            raise Rejection(f"the workbook is damaged: its part {member} is not readable XML ({exc})") from None
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise Rejection(f"the workbook is damaged: its part {member} cannot be unpacked ({exc})") from None

    def _rels(self, part: str) -> dict[str, tuple[str, str]]:
        """Relationship id -> (type's last segment, target part) of a part."""
        folder, name = posixpath.split(part)
        rels_part = posixpath.join(folder, "_rels", name + ".rels")
        if rels_part not in self.zip.NameToInfo:
            return {}
        out = {}
        for rel in self._xml(rels_part):
            if _local(rel.tag) != "Relationship" or rel.get("TargetMode") == "External":
                continue
            target = rel.get("Target", "")
            target = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
            out[rel.get("Id")] = (rel.get("Type", "").rpartition("/")[2], target)
        return out

    def _read_structure(self) -> None:
        names = self.zip.NameToInfo
        workbook = next((target for kind, target in self._rels("").values() if kind == "officeDocument"),
                        "xl/workbook.xml")
        if workbook not in names:
            raise Rejection("the file is a zip archive, not an Excel workbook (.xlsx): it has no workbook part")
        root = self._xml(workbook)
        self.date1904 = False
        sheets = []
        for el in root.iter():
            tag = _local(el.tag)
            if tag == "workbookPr":
                self.date1904 = el.get("date1904", "false").lower() in ("1", "true")
            elif tag == "sheet":
                rid = next((v for k, v in el.attrib.items() if k.startswith("{") and k[1:].partition("}")[0] in REL_NS
                            and _local(k) == "id"), None)
                sheets.append((el.get("name", ""), rid))
        if not sheets:
            raise Rejection("the workbook has no sheet")
        rels = self._rels(workbook)
        self.sheet_name, rid = sheets[0]
        kind, target = rels.get(rid, ("", ""))
        if kind in ("chartsheet", "dialogsheet", "macrosheet"):
            raise Rejection(f"the first sheet {self.sheet_name!r} of the workbook is a {kind.replace('sheet', '')} sheet, "
                            "not a table of rows: put the extract on the first sheet")
        if kind != "worksheet" or target not in names:
            raise Rejection(f"the workbook is damaged: its first sheet {self.sheet_name!r} has no worksheet part")
        self.sheet_part = target
        by_kind = {k: t for k, t in rels.values()}
        self.strings_part = by_kind.get("sharedStrings")
        self.styles = _date_styles(self._xml(by_kind["styles"])) if by_kind.get("styles") in names else {}

    # -- shared strings

    def shared_strings(self):
        part = self.strings_part
        if not part or part not in self.zip.NameToInfo:
            return []
        big = self.zip.NameToInfo[part].file_size > SPILL_STRINGS_BYTES
        store = _DiskStrings() if big else []
        try:
            _parse_shared_strings(self._stream(part), store.append)
        except BaseException:
            if big:
                store.close()
            raise
        if big:
            store.finish()
        return store

    def _stream(self, member: str) -> Iterator[bytes]:
        try:
            with self.zip.open(member) as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise Rejection(f"the workbook is damaged: its part {member} cannot be unpacked ({exc})") from None


def _looks_like_text(path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4096)
    return b"\x00" not in head and (b"," in head or b"\t" in head)


def _date_styles(root: ElementTree.Element) -> dict[int, str]:
    """Cell style index (the `s` of a cell) -> 'date' or 'time', for the styles that show dates."""
    custom = {}
    xfs = []
    for el in root:
        tag = _local(el.tag)
        if tag == "numFmts":
            for fmt in el:
                try:
                    custom[int(fmt.get("numFmtId", "-1"))] = fmt.get("formatCode", "")
                except ValueError:
                    continue
        elif tag == "cellXfs":
            xfs = [xf.get("numFmtId", "0") for xf in el if _local(xf.tag) == "xf"]
    out = {}
    for index, fmt_id in enumerate(xfs):
        try:
            n = int(fmt_id)
        except ValueError:
            continue
        kind = _format_kind(custom[n]) if n in custom else (
            "date" if n in BUILTIN_DATE_FORMATS else "time" if n in BUILTIN_TIME_FORMATS else None)
        if kind:
            out[index] = kind
    return out


def _format_kind(code: str) -> str | None:
    """'date' when a number format code shows a date, 'time' when only a time of day, else None."""
    section = code.split(";")[0]
    plain, i = [], 0
    while i < len(section):
        ch = section[i]
        if ch == '"':                       # literal text
            end = section.find('"', i + 1)
            i = len(section) if end < 0 else end + 1
            continue
        if ch in "\\_*":                    # escaped character, padding, fill
            i += 2
            continue
        if ch == "[":                       # colour, condition, locale; [h] [mm] [ss] are elapsed time
            end = section.find("]", i + 1)
            inner = section[i + 1:end if end > 0 else len(section)].lower()
            if inner and set(inner) <= set("hms"):
                plain.append("h")
            i = len(section) if end < 0 else end + 1
            continue
        plain.append(ch.lower())
        i += 1
    text = "".join(plain)
    if any(ch in text for ch in "dy") or ("m" in text and "h" not in text and "s" not in text):
        return "date"
    if any(ch in text for ch in "hs"):
        return "time"
    return None


class _DiskStrings:
    """The shared strings of a big workbook: UTF-8 in a temporary file, found by offsets (8 bytes each)."""

    def __init__(self):
        self.fh = tempfile.TemporaryFile()
        self.offsets = array("q", [0])
        self.pos = 0
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.mm = None

    def append(self, text: str) -> None:
        data = text.encode("utf-8")
        self.pending.append(data)
        self.pos += len(data)
        self.pending_size += len(data)
        self.offsets.append(self.pos)
        if self.pending_size > CHUNK:
            self._flush()

    def _flush(self) -> None:
        self.fh.write(b"".join(self.pending))
        self.pending.clear()
        self.pending_size = 0

    def finish(self) -> None:
        self._flush()
        self.fh.flush()
        if self.pos:
            self.mm = mmap.mmap(self.fh.fileno(), 0, access=mmap.ACCESS_READ)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        if i < 0:
            raise IndexError(i)
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.mm[a:b].decode("utf-8") if b > a else ""

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
        self.fh.close()


def _tag_names(*locals_: str) -> dict[str, str]:
    """expat's namespaced names ('<namespace>|<local>') of the spreadsheet elements -> local name."""
    return {f"{ns}|{name}": name for ns in MAIN_NS for name in locals_} | {name: name for name in locals_}


def _parse_shared_strings(chunks: Iterator[bytes], add) -> None:
    """Each <si> of the shared-string part: the text of its <t> elements (rich text runs joined,
    phonetic guides left out), in order."""
    tags = _tag_names("si", "t", "rPh")
    state = {"in_t": False, "rph": 0}
    buf: list[str] = []

    def start(name, attrs):
        tag = tags.get(name)
        if tag == "t":
            state["in_t"] = not state["rph"]
        elif tag == "si":
            buf.clear()
        elif tag == "rPh":
            state["rph"] += 1

    def end(name):
        tag = tags.get(name)
        if tag == "t":
            state["in_t"] = False
        elif tag == "si":
            add("".join(buf))
        elif tag == "rPh":
            state["rph"] -= 1

    def chars(data):
        if state["in_t"]:
            buf.append(data)

    for _ in _run_expat(chunks, start, end, chars, "the shared strings"):
        pass


def _run_expat(chunks: Iterator[bytes], start, end, chars, what: str, after_chunk=None) -> Iterator:
    """Feed the chunks to expat; after each, yield what after_chunk() yields (rows completed)."""
    parser = expat.ParserCreate(namespace_separator="|")
    parser.buffer_text = True
    parser.buffer_size = 1 << 16
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        for chunk in chunks:
            parser.Parse(chunk, False)
            if after_chunk:
                yield from after_chunk()
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise Rejection(f"the workbook is damaged: {what} are not readable XML "
                        f"({expat.ErrorString(exc.code)} at line {exc.lineno}, column {exc.offset})") from None
    if after_chunk:
        yield from after_chunk()


# ------------------------------------------------------------------------------------------ the sheet

# A cell that is not plain text stays a tuple until its column is known: (v, kind), kind None for a
# number, 'date' / 'time' for a number with a date / time format, 'iso' for an ISO 8601 date cell.

def _sheet_rows(book: _Book, strings) -> Iterator[tuple[int, list]]:
    """(row number on the sheet, cells) of every row holding a value, streamed."""
    tags = _tag_names("row", "c", "v", "t", "is", "rPh")
    styles = book.styles
    rows: list[tuple[int, list]] = []
    cells: list = []
    buf: list[str] = []
    letters_cache: dict[str, int] = {}
    # [row number, collecting text, cell type, cell style, cell column, in phonetic run, last row]
    st = [0, False, None, None, 0, 0, 0]

    tag_of = tags.get

    def start(name, attrs):
        tag = tag_of(name)
        if tag == "c":
            ref = attrs.get("r")
            if ref:
                letters = ref.rstrip("0123456789")
                col = letters_cache.get(letters)
                if col is None:
                    col = _column_index(letters) if letters.isascii() and letters.isalpha() and letters.isupper() else -1
                    if not 0 <= col < MAX_COLUMNS:
                        raise Rejection(f"the workbook is damaged: sheet {book.sheet_name!r} has a cell named "
                                        f"{ref[:20]!r}, which is no cell of a worksheet")
                    letters_cache[letters] = col
                st[4] = col
            else:
                st[4] = len(cells)
            st[2] = attrs.get("t")
            s = attrs.get("s")
            st[3] = styles.get(int(s)) if s and styles and s.isdigit() else None
            buf.clear()
        elif tag == "v" or tag == "t":
            st[1] = not st[5]
        elif tag == "row":
            r = attrs.get("r")
            st[0] = int(r) if r and r.isdigit() else st[6] + 1
            cells.clear()
        elif tag == "is":
            buf.clear()
        elif tag == "rPh":
            st[5] += 1

    def end(name):
        tag = tag_of(name)
        if tag == "c":
            t = st[2]
            text = "".join(buf) if buf else ""
            if t is None or t == "n":
                value = (text, st[3]) if text else ""
            elif t == "s":
                try:
                    i = int(text)
                    if i < 0:
                        raise IndexError(i)
                    value = strings[i]
                except (ValueError, IndexError):
                    raise Rejection(f"the workbook is damaged: cell {column_letters(st[4])}{st[0]} of sheet "
                                    f"{book.sheet_name!r} names a shared string that does not exist") from None
            elif t == "b":
                value = "TRUE" if text == "1" else "FALSE"
            elif t == "d":
                value = (text, "iso") if text else ""
            else:                       # inlineStr, str (a formula's text), e (an error such as #N/A)
                value = text
            col = st[4]
            n = len(cells)
            if col == n:
                cells.append(value)
            elif col > n:
                cells.extend([""] * (col - n))
                cells.append(value)
            else:
                cells[col] = value
        elif tag == "v" or tag == "t":
            st[1] = False
        elif tag == "row":
            st[6] = st[0]
            if any(cells):              # a row of empty cells is no row ("" is the only false value)
                rows.append((st[0], cells[:]))
        elif tag == "rPh":
            st[5] -= 1

    def chars(data):
        if st[1]:
            buf.append(data)

    def take():
        if rows:
            out = rows[:]
            rows.clear()
            yield from out

    yield from _run_expat(book._stream(book.sheet_part), start, end, chars,
                          f"the cells of sheet {book.sheet_name!r}", take)


# ------------------------------------------------------------------------------------------ rendering

def _serial_datetime(serial: float, date1904: bool) -> tuple[dt.date | None, int]:
    """(date or None when before the epoch, seconds of the day) of an Excel serial number."""
    days = int(serial // 1)
    seconds = round((serial - days) * 86400)
    if seconds >= 86400:
        days, seconds = days + 1, seconds - 86400
    if date1904:
        return EPOCH_1904 + dt.timedelta(days=days), seconds
    if days >= 61:
        return EPOCH_1900 + dt.timedelta(days=days), seconds
    if days == 60:
        return None, seconds            # 29/02/1900: a day that never was (Excel's Lotus bug)
    if days >= 1:
        return EPOCH_1900 + dt.timedelta(days=days + 1), seconds
    return None, seconds


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _number_text(v: str) -> str:
    """An Excel number as an agency would write it: integral without decimals, else a decimal comma."""
    body = v[1:] if v[:1] == "-" else v
    if body.isdigit():
        return v
    try:
        f = float(v)
    except ValueError:
        return v
    if f.is_integer() and abs(f) < 1e16:
        return str(int(f))
    text = repr(f)
    if "e" in text or "E" in text:
        text = format(f, ".15f").rstrip("0").rstrip(".")
    return text.replace(".", ",")


class _Renderer:
    """Turns a row's cells into text, by what its column holds (from the contract)."""

    def __init__(self, date1904: bool, kinds: dict[int, str] | None = None, widths: dict[int, int] | None = None):
        self.date1904 = date1904
        self.kinds = kinds or {}
        self.widths = widths or {}

    def cell(self, value, col: int) -> str:
        if value.__class__ is str:
            return value
        v, kind = value
        if kind is None:
            text = _number_text(v)
            width = self.widths.get(col)
            if width and len(text) < width and text.isdigit():
                text = text.zfill(width)
            return text
        if kind == "iso":
            try:
                stamp = dt.datetime.fromisoformat(v.replace("Z", ""))
            except ValueError:
                return v
            day, seconds = stamp.date(), stamp.hour * 3600 + stamp.minute * 60 + stamp.second
        else:
            try:
                day, seconds = _serial_datetime(float(v), self.date1904)
            except (ValueError, OverflowError):
                return v
            if kind == "time" and self.kinds.get(col) is None:
                return _hms(seconds)
            if day is None:
                return "29/02/1900" if 60 <= float(v) < 61 else _number_text(v)
        text = f"{day.day:02d}/{day.month:02d}/{day.year:04d}"
        column = self.kinds.get(col)
        if column == "timestamp" or (column is None and seconds):
            text += " " + _hms(seconds)
        return text

    def row(self, cells: list) -> list[str]:
        cell = self.cell
        return [c if c.__class__ is str else cell(c, i) for i, c in enumerate(cells)]


# ------------------------------------------------------------------------------------------ entry point

def open_workbook(path, contract=None) -> tuple[TextFormat, Iterator[bytes]]:
    """The header and the data pieces (CSV text) of the first sheet of an .xlsx delivery."""
    book = _Book(path)
    strings = None
    try:
        strings = book.shared_strings()
        rows = _sheet_rows(book, strings)
        plain = _Renderer(book.date1904)
        seen: list[tuple[int, list]] = []
        header_row = None
        for item in rows:
            seen.append(item)
            if contract is None or _names_all_required(plain.row(item[1]), contract):
                header_row = len(seen) - 1
                break
            if len(seen) >= HEADER_SEARCH_ROWS:
                break
        if not seen:
            raise Rejection(f"the first sheet {book.sheet_name!r} of the workbook is empty: no header row and no rows")
        if header_row is None:
            header_row = _best_header(seen, contract, plain)
        if header_row is None:
            required = ", ".join(contract.required_sources)
            raise Rejection(f"no header row found on the first sheet {book.sheet_name!r}: none of its first "
                            f"{len(seen)} rows names the columns of a {contract.feed} delivery (required: {required})")
        number, cells = seen[header_row]
        header = [_nfc(h).strip() for h in plain.row(cells)]
        while header and header[-1] == "":
            header.pop()
        renderer = _column_renderer(book.date1904, header, contract)
        buffered = seen[header_row + 1:]
    except BaseException:
        _close(book, strings)
        raise
    where = f"Excel workbook (.xlsx), sheet {book.sheet_name!r}, header on row {number}"
    return TextFormat(where, ",", header), _pieces(book, strings, buffered, rows, renderer, len(header))


def _close(book: _Book, strings) -> None:
    if isinstance(strings, _DiskStrings):
        strings.close()
    book.close()


def _nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def _names_all_required(cells: list[str], contract) -> bool:
    names = {str(c).strip().upper() for c in cells}
    return all(r in names for r in contract.required_sources)


def _best_header(seen, contract, plain: _Renderer) -> int | None:
    if contract is None:
        return 0
    known = {c.source for c in contract.columns}
    best, best_n = None, 1
    for i, (_, cells) in enumerate(seen):
        n = len({str(c).strip().upper() for c in plain.row(cells)} & known)
        if n > best_n:
            best, best_n = i, n
    return best


def _column_renderer(date1904: bool, header: list[str], contract) -> _Renderer:
    if contract is None:
        return _Renderer(date1904)
    types = {c.source: c.type for c in contract.columns}
    kinds, widths = {}, {}
    for i, name in enumerate(header):
        t = types.get(name.strip().upper())
        if t in DATE_TYPES:
            kinds[i] = DATE_TYPES[t]
        if t in CODE_WIDTHS:
            widths[i] = CODE_WIDTHS[t]
    return _Renderer(date1904, kinds, widths)


def _pieces(book: _Book, strings, buffered, rows, renderer: _Renderer, width: int) -> Iterator[bytes]:
    """The data rows as CSV text (UTF-8, NFC, LF), a few thousand rows a piece."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    batch: list[list[str]] = []
    last = column_letters(width - 1) if width else "A"

    def text(rows_) -> str:
        writer.writerows(rows_)
        piece = out.getvalue()
        out.seek(0)
        out.truncate()
        return piece

    def flush() -> str:
        piece = text(batch)
        if "\r" in piece:     # line breaks inside cells: LF, as the CSV path makes them
            piece = text([[v.replace("\r\n", "\n").replace("\r", "\n") for v in r] for r in batch])
        batch.clear()
        return _nfc(piece).encode("utf-8")

    try:
        for number, cells in _chain(buffered, rows):
            values = renderer.row(cells)
            if len(values) > width:
                extra = next((i for i in range(width, len(values)) if values[i].strip()), None)
                if extra is not None:
                    raise Rejection(f"row {number} of sheet {book.sheet_name!r} has a value in column "
                                    f"{column_letters(extra)} ({values[extra][:40]!r}), right of the header's last "
                                    f"column {last}: every value needs a column name in the header row")
                del values[width:]
            elif len(values) < width:
                values.extend([""] * (width - len(values)))
            batch.append(values)
            if len(batch) >= ROWS_PER_PIECE:
                yield flush()
        if batch:
            yield flush()
    finally:
        _close(book, strings)


def _chain(first, rest):
    yield from first
    yield from rest
