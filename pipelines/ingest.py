"""One delivery end to end (being written)."""
from __future__ import annotations

from pathlib import Path


def ingest_file(path: str | Path) -> dict:
    """Process one delivery now and return its receipt (a JSON-serialisable dict)."""
    raise NotImplementedError
