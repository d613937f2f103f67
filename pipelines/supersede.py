"""A snapshot older than one already applied for the same feed and province must not roll the
core back: it is recorded and reported as `superseded` (exit code 0: the file is not wrong, it is
late; nothing in it needs fixing and nothing was loaded).

Order of snapshots: the date in the file name, then the sequence number (compared as numbers when
both are digits, else as text). Only applied snapshots count (loaded, loaded_with_rejections), not
resubmissions (partial deliveries), rejected or superseded files.
"""
from __future__ import annotations

import psycopg

from .delivery import DeliveryName


class Superseded(Exception):
    def __init__(self, newer_id: int, newer_file: str):
        super().__init__(newer_file)
        self.newer_id, self.newer_file = newer_id, newer_file


def reason(newer_file: str) -> str:
    return (f"a newer snapshot of this feed and province was already applied ({newer_file}): this older "
            "one would roll the core data back, so nothing of it was loaded")


def _seq_key(seq: str) -> tuple:
    return (0, int(seq), "") if seq.isdigit() else (1, 0, seq)


def check(conn: psycopg.Connection, feed: str, name: DeliveryName, delivery_id: int, *, partial: bool) -> None:
    """Raise Superseded when an applied snapshot of the feed and province is newer than this
    delivery: dated later, or (for a snapshot) the same day with a higher sequence number. A
    resubmission corrects the snapshot of its day, so only a later date supersedes it."""
    rows = conn.execute("""
        select delivery_id, file_name, delivery_date, seq from meta.delivery
        where feed = %s and province_code = %s and delivery_id <> %s and not partial
          and status in ('loaded', 'loaded_with_rejections') and delivery_date >= %s
        order by delivery_date desc, delivery_id desc""",
                        (feed, name.province, delivery_id, name.date)).fetchall()
    for newer_id, newer_file, date, seq in rows:
        if date > name.date or (not partial and _seq_key(seq) > _seq_key(name.seq)):
            raise Superseded(newer_id, newer_file)
