"""The SHA-256 of an inbox file, remembered by (path, size, modification time).

The inbox is never emptied, and every DAG run asks which files are new: without this, each run
would read every snapshot ever delivered again (gigabytes) to hash it. A file changed in place
has another size or modification time and is hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .config import settings
from .locks import file_lock

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(paths: list[str | Path]) -> dict[str, str]:
    """{path: sha256} for these files, hashing only those not seen with this size and mtime."""
    cache_path = settings().home / "cache" / "digests.json"
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_path.with_suffix(".lock")):
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, ValueError):
            cache = {}
        out, changed = {}, False
        for p in map(str, paths):
            st = os.stat(p)
            stamp = [st.st_size, st.st_mtime_ns]
            entry = cache.get(p)
            if not entry or entry[:2] != stamp:
                entry = stamp + [sha256_file(p)]
                cache[p], changed = entry, True
            out[p] = entry[2]
        if changed:
            tmp = cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_path)
    return out
