"""Resubmissions: an agency sends corrected rows for the rows of a delivery that were rejected.

Convention (README, "For sector agencies"): the file is named like any delivery of the feed, with
a sequence number that starts with R: `<FEED>_<PROVINCE>_<YYYYMMDD>_R<NN>.<ext>`, e.g.
`CUTRU_01_20261121_R01.csv`. It holds only the corrected rows. It is checked by the same rules but
is not a snapshot: the rows it does not hold stay as they are (nothing is removed).

Every delivery that loads a key resolves the open quarantined rows of the same feed and province
with that key (quarantine.row.resolved_by = the delivery, matched by the feed's key as the
quarantine recorded it). A full snapshot applied is the whole truth for its province: it also
closes the older open rows of the province, whose keys it either loads, quarantines again (a new
open row) or no longer lists.
"""
from __future__ import annotations

import psycopg

from .delivery import DeliveryName


def is_resubmission(name: DeliveryName) -> bool:
    return len(name.seq) > 1 and name.seq[0] in "Rr"


def resolve(conn: psycopg.Connection, feed: str, province: str, delivery_id: int, loaded_keys: str,
            *, whole_scope: bool) -> int:
    """Mark resolved the open quarantined rows of this feed and province that this delivery
    replaces: those whose key the query `loaded_keys` (one text column) returns, or all of them
    when the delivery is a full snapshot (whole_scope). Returns how many."""
    which = "true" if whole_scope else f"q.record_key in (select k from ({loaded_keys}) loaded (k))"
    return conn.execute(f"""
        update quarantine.row q set resolved_by = %(delivery)s, resolved_at = now()
        from meta.delivery d
        where d.delivery_id = q.delivery_id and d.feed = %(feed)s and d.province_code = %(province)s
          and q.feed = %(feed)s and q.resolved_by is null and q.delivery_id <> %(delivery)s
          and {which}""", {"delivery": delivery_id, "feed": feed, "province": province}).rowcount
