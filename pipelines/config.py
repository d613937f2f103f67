"""Where corehub keeps its files and which warehouse it talks to, read from the environment.

COREHUB_HOME   folder for the embedded warehouse, inboxes, archive and reports (default ./.corehub)
WAREHOUSE_URL  any PostgreSQL to use instead of the embedded one
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
SQL_DIR = PROJECT_ROOT / "sql"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"


@dataclass(frozen=True)
class Settings:
    home: Path
    warehouse_url: str | None  # None: the embedded warehouse under home

    @property
    def inbox(self) -> Path:
        return self.home / "inbox"

    @property
    def archive(self) -> Path:
        return self.home / "archive"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def samples(self) -> Path:
        return self.home / "samples"

    def feed_inbox(self, feed: str) -> Path:
        return self.inbox / feed.upper()


def settings() -> Settings:
    home = Path(os.environ.get("COREHUB_HOME") or PROJECT_ROOT / ".corehub").resolve()
    return Settings(home=home, warehouse_url=os.environ.get("WAREHOUSE_URL") or None)


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs and receipts."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)
