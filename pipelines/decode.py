"""Turn a delivered CSV into clean UTF-8 lines for COPY, streaming, in memory that does not grow.

Handles what agencies really send: UTF-8 with or without BOM, Windows-1258, UTF-16 (Excel's
tab-separated "Unicode text"), NFD text, CRLF endings, blank lines. Every chunk is cut at a line
end, so NFC normalisation never splits a letter from its tone mark.

UTF-8, the common case, stays bytes all the way to COPY (decoding and re-encoding a 10-million-row
file costs more than the COPY itself): only a chunk holding a combining diacritical mark
(U+0300-U+036F: how decomposed Vietnamese spells its tones) is decoded and NFC-normalised, and
PostgreSQL validates the UTF-8 as it copies. A file that turns out not to be UTF-8 after all is
read again as Windows-1258 (NotUtf8).
"""
from __future__ import annotations

import codecs
import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .delivery import Rejection

CHUNK = 1 << 20
HEAD = 1 << 16
BLANK_LINES = re.compile(r"\n[ \t]*(?=\n)")
BLANK_LINES_BYTES = re.compile(rb"\n[ \t]*(?=\n)")
BLANK_LINE_BYTES = re.compile(rb"\n[ \t]*\n")
NUL_REASON = "the file contains NUL bytes, which a text extract never has: it is damaged or not a CSV file"
MAX_LINE = CHUNK  # no row of an extract comes near it; a longer line is a damaged file (and COPY's memory)
LONG_LINE_REASON = ("a line of the file is longer than 1 MiB, which no row of an extract is: the file is damaged "
                    "or its line ends are missing")
UTF8 = ("utf-8", "utf-8-sig")  # the codecs of a UTF-8 file, without and with a BOM
ENCODING_NAMES = {"cp1258": "Windows-1258", "utf-16": "UTF-16", "utf-16-le": "UTF-16", "utf-16-be": "UTF-16"}


@dataclass(frozen=True)
class TextFormat:
    encoding: str      # Python codec name
    delimiter: str     # "," or "\t"
    header: list[str]  # header names as sent, trimmed, NFC


MAGIC = {b"\x1f\x8b": "compressed (gzip)", b"PK\x03\x04": "a zip archive (or an Excel workbook)",
         b"7z\xbc\xaf": "compressed (7-Zip)", b"Rar!": "compressed (RAR)", b"%PDF": "a PDF document"}


def sniff_encoding(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(4096)
        for magic, what in MAGIC.items():
            if head.startswith(magic):
                raise Rejection(f"the file is {what}: deliver the CSV itself, not an archive")
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith(codecs.BOM_UTF32_LE) or head.startswith(codecs.BOM_UTF32_BE):
            raise Rejection("the file is UTF-32 text, which is not an agreed encoding: save it as UTF-8 "
                            "(or as Excel's Unicode text, UTF-16)")
        if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
            return "utf-16"
        if len(head) >= 4 and head[1::2].count(0) > len(head) // 4:
            return "utf-16-le"
        if len(head) >= 4 and head[0::2].count(0) > len(head) // 4:
            return "utf-16-be"
        # UTF-8 unless its first 64 KiB are not (the rest is checked while copying)
        fh.seek(0)
        try:
            codecs.getincrementaldecoder("utf-8")().decode(fh.read(HEAD), final=False)
        except UnicodeDecodeError:
            return "cp1258"
    return "utf-8"


class NotUtf8(Exception):
    """A file sniffed as UTF-8 holds bytes that are not: read it again as Windows-1258."""


def _lines_cut(chunks, clean, newline):
    """Re-chunk text or bytes so that every piece ends at a line end; clean each piece."""
    rest = newline[:0]
    for chunk in chunks:
        data = rest + chunk
        cut = data.rfind(newline)
        if cut < 0:
            if len(data) > MAX_LINE:
                raise Rejection(LONG_LINE_REASON)
            rest = data
            continue
        if rest and data.find(newline) > MAX_LINE:  # a chunk holds at most MAX_LINE: only a carried line can be longer
            raise Rejection(LONG_LINE_REASON)
        rest = data[cut + 1:]
        yield clean(data[:cut + 1])
    if rest.strip():
        yield clean(rest + newline)


def _clean(piece: str) -> str:
    if "\r" in piece:
        piece = piece.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in piece:
        raise Rejection(NUL_REASON)
    piece = BLANK_LINES.sub("", "\n" + piece)[1:] if "\n\n" in piece or "\n " in piece or "\n\t" in piece else piece
    if not unicodedata.is_normalized("NFC", piece):
        piece = unicodedata.normalize("NFC", piece)
    return piece


def _clean_bytes(piece: bytes) -> bytes:
    if b"\r" in piece:
        piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"\x00" in piece:
        raise Rejection(NUL_REASON)
    probe = b"\n" + piece  # a blank line may open the piece
    if BLANK_LINE_BYTES.search(probe):  # one pass: a 10 GB file has a billion line ends to look at
        piece = BLANK_LINES_BYTES.sub(b"", probe)[1:]
    if b"\xcc" in piece or b"\xcd" in piece:  # lead bytes of U+0300-U+036F
        piece = _nfc_lines(piece)
    return piece


def _nfc_lines(piece: bytes) -> bytes:
    """NFC-normalise the lines of a UTF-8 piece that hold combining marks, and only those: a few
    percent of a file's lines is typical, and normalising whole megabytes costs seconds per file.
    Vietnamese tone and vowel marks are U+0300-U+033F (lead byte 0xCC, found with a fast find);
    a piece with marks from U+0340-U+036F (0xCD, not Vietnamese) is normalised whole."""
    if b"\xcd" in piece:
        return _nfc(piece)
    out, done = [], 0
    while (mark := piece.find(b"\xcc", done)) >= 0:  # the next mark past the last line done
        start = piece.rfind(b"\n", 0, mark) + 1
        end = piece.find(b"\n", mark)
        end = len(piece) if end < 0 else end
        out += [piece[done:start], _nfc(piece[start:end])]
        done = end
    out.append(piece[done:])
    return b"".join(out)


def _nfc(data: bytes) -> bytes:
    try:
        return unicodedata.normalize("NFC", data.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:
        raise NotUtf8() from None


def _utf8_pieces(path: Path, bom: bool, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """The file's bytes from `start` (a line start) to `stop` (a line end; None: its end)."""
    def raw() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            fh.seek(start)
            if bom and not start:
                fh.read(len(codecs.BOM_UTF8))
            left = stop - fh.tell() if stop is not None else None
            while chunk := fh.read(CHUNK if left is None else min(CHUNK, left)):
                if left is not None:
                    left -= len(chunk)
                yield chunk
    return _lines_cut(raw(), _clean_bytes, b"\n")


def _text_pieces(path: Path, encoding: str) -> Iterator[bytes]:
    def raw() -> Iterator[str]:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        with open(path, "rb") as fh:
            try:
                while chunk := fh.read(CHUNK):
                    yield decoder.decode(chunk)
                yield decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                name = ENCODING_NAMES.get(encoding, encoding)
                what = (f"holds the byte 0x{exc.object[exc.start]:02X}, which is no character in {name}"
                        if "truncated" not in exc.reason else f"ends in the middle of a {name} character")
                raise Rejection(f"the file is not readable as text: read as {name}, it {what} (a binary or damaged "
                                "file?): send UTF-8, Windows-1258 or UTF-16 text") from None
    for piece in _lines_cut(raw(), _clean, "\n"):
        yield piece.encode("utf-8")


def text_pieces(path: Path, encoding: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """The file as NFC, LF-terminated UTF-8 pieces without blank lines (leading ones included).
    A UTF-8 file may be read from byte `start` to byte `stop` only (see split_point)."""
    if encoding in UTF8:
        pieces = _utf8_pieces(path, bom=encoding == "utf-8-sig", start=start, stop=stop)
    elif start or stop is not None:
        raise ValueError(f"only a UTF-8 file is read a part at a time, not {encoding}")
    else:
        pieces = _text_pieces(path, encoding)
    first = True
    for piece in pieces:
        if first:
            piece = piece.lstrip(b"\n")
            if piece.startswith(codecs.BOM_UTF8):  # a BOM the codec left (UTF-16 files carry one too)
                piece = piece[len(codecs.BOM_UTF8):].lstrip(b"\n")
            first = not piece
        if piece:
            yield piece


def open_text(path: Path, encoding: str | None = None, stop: int | None = None) -> tuple[TextFormat, Iterator[bytes]]:
    """Sniff encoding, read the header line; returns the format and the data pieces after it
    (up to byte `stop` of a UTF-8 file: the first part of it, see split_point)."""
    encoding = encoding or sniff_encoding(path)
    pieces = text_pieces(path, encoding, stop=stop)
    try:
        first = next(pieces)
    except StopIteration:
        raise Rejection("the file is empty: no header line and no rows") from None
    except NotUtf8:
        return open_text(path, "cp1258")
    header_bytes, _, remainder = first.partition(b"\n")
    try:
        header_line = header_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return open_text(path, "cp1258")
    delimiter = _delimiter(header_line)
    header = next(csv.reader([header_line], delimiter=delimiter))
    header = [h.strip().lstrip("\ufeff").strip() for h in header]

    def data() -> Iterator[bytes]:
        if remainder:
            yield remainder
        yield from pieces
    return TextFormat(encoding, delimiter, header), data()


def split_point(path: Path, after: int) -> int | None:
    """The first line end at or past byte `after` that no quoted field spans: the byte after a
    newline with an even number of `"` before it (PostgreSQL's CSV reader enters and leaves a
    quoted field at each one; an escaped `""` is two). Two COPYs can then read the file's two
    parts at once. None when there is no such line end before the file ends."""
    quotes = 0
    with open(path, "rb") as fh:
        done = 0
        while done < after and (chunk := fh.read(min(8 * CHUNK, after - done))):
            quotes += chunk.count(b'"')
            done += len(chunk)
        while chunk := fh.read(CHUNK):
            at = 0
            while (newline := chunk.find(b"\n", at)) >= 0:
                quotes += chunk.count(b'"', at, newline)
                if quotes % 2 == 0:
                    return done + newline + 1
                at = newline + 1
            quotes += chunk.count(b'"', at)
            done += len(chunk)
    return None


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        return ","
    if best in (";", "|"):
        raise Rejection(f"the columns are separated by {best!r}; the agreed format separates them by commas "
                        "(or tabs in Excel's Unicode text)")
    return best


def open_delivery(path: Path, ext: str, contract=None, encoding: str | None = None) -> tuple[TextFormat, Iterator[bytes]]:
    """The format and the data pieces of a delivery, whatever its file type: a CSV file, or the
    first sheet of an Excel workbook (.xlsx) turned into the same CSV text (pipelines.workbook),
    or land parcels (GeoJSON, or CSV with WKT) with their geometry checked (pipelines.land).
    contract: the feed's, to find a workbook's header row and what each of its columns holds.
    encoding: read a text file in this encoding instead of sniffing it."""
    if contract is not None and contract.has_geometry:
        from .land import open_parcels

        return open_parcels(path, ext, contract, encoding)
    if ext == "xlsx":
        from .workbook import open_workbook

        return open_workbook(path, contract)
    with open(path, "rb") as fh:
        zipped = fh.read(4) == b"PK\x03\x04"
    if zipped and contract is not None and "xlsx" in contract.formats:
        import zipfile

        with zipfile.ZipFile(path) as z:
            if any(n.startswith("xl/") for n in z.namelist()):
                raise Rejection(f"the file is an Excel workbook named .{ext}: deliver it named .xlsx")
    return open_text(path, encoding)
