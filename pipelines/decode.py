"""Turn a delivered CSV into clean UTF-8 lines for COPY, streaming, in memory that does not grow.

Handles what agencies really send: UTF-8 with or without BOM, Windows-1258, UTF-16 (Excel's
tab-separated "Unicode text"), NFD text, CRLF endings, blank lines. Every chunk is cut at a line
end, so NFC normalisation never splits a letter from its tone mark.
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
BLANK_LINES = re.compile(r"\n[ \t]*(?=\n)")


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
        if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
            return "utf-16"
        if len(head) >= 4 and head[1::2].count(0) > len(head) // 4:
            return "utf-16-le"
        if len(head) >= 4 and head[0::2].count(0) > len(head) // 4:
            return "utf-16-be"
        # UTF-8 unless some byte sequence is not UTF-8: then the Vietnamese Windows code page
        decoder = codecs.getincrementaldecoder("utf-8")()
        fh.seek(0)
        try:
            while chunk := fh.read(CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return "cp1258"
    return "utf-8"


def _lines_cut(chunks: Iterator[str]) -> Iterator[str]:
    """Re-chunk decoded text so that every piece ends at a line end; clean each piece."""
    rest = ""
    for chunk in chunks:
        text = rest + chunk
        cut = text.rfind("\n")
        if cut < 0:
            rest = text
            continue
        rest = text[cut + 1:]
        yield _clean(text[:cut + 1])
    if rest.strip():
        yield _clean(rest + "\n")


def _clean(piece: str) -> str:
    if "\r" in piece:
        piece = piece.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in piece:
        raise Rejection("the file contains NUL bytes, which a text extract never has: "
                        "it is damaged or not a CSV file")
    piece = BLANK_LINES.sub("", "\n" + piece)[1:] if "\n\n" in piece or "\n " in piece or "\n\t" in piece else piece
    if not unicodedata.is_normalized("NFC", piece):
        piece = unicodedata.normalize("NFC", piece)
    return piece


def text_pieces(path: Path, encoding: str) -> Iterator[str]:
    """The file's text as NFC, LF-terminated pieces without blank lines."""
    def raw() -> Iterator[str]:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        with open(path, "rb") as fh:
            try:
                while chunk := fh.read(CHUNK):
                    yield decoder.decode(chunk)
                yield decoder.decode(b"", final=True)
            except UnicodeDecodeError as exc:
                raise Rejection(f"the file is not readable text in {encoding} (byte {exc.start} of a chunk "
                                "cannot be decoded): send UTF-8, Windows-1258 or UTF-16") from None
    first = True
    for piece in _lines_cut(raw()):
        if first:
            piece = piece.lstrip("\ufeff\n")
            first = False
        if piece:
            yield piece


def open_text(path: Path) -> tuple[TextFormat, Iterator[str]]:
    """Sniff encoding, read the header line; returns the format and the data pieces after it."""
    encoding = sniff_encoding(path)
    pieces = text_pieces(path, encoding)
    try:
        first = next(pieces)
    except StopIteration:
        raise Rejection("the file is empty: no header line and no rows") from None
    header_line, _, remainder = first.partition("\n")
    delimiter = _delimiter(header_line)
    header = next(csv.reader([header_line], delimiter=delimiter))
    header = [h.strip().lstrip("\ufeff").strip() for h in header]

    def data() -> Iterator[str]:
        if remainder:
            yield remainder
        yield from pieces
    return TextFormat(encoding, delimiter, header), data()


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        return ","
    if best in (";", "|"):
        raise Rejection(f"the columns are separated by {best!r}; the agreed format separates them by commas "
                        "(or tabs in Excel's Unicode text)")
    return best
