"""A test-only hook to stop an ingest at a stage boundary, so that a test can kill it there.

COREHUB_PAUSE_AT=<stage>[,<stage>...]  where the ingest stops: archived (registered, file archived),
    copy (COPY under way: the first piece sent), validated (checked; GX validates in the background),
    locked (the feed and province lock just taken), merge (inside the publish transaction, the store
    written), publish (receipt and report written, just before the commit).
At such a stage the process writes the marker file `$COREHUB_PAUSE_DIR/paused-<stage>` (default
folder: $COREHUB_HOME) holding its pid, and waits while the file exists: the test then kills the
process, or deletes the file to let it go on. Unset (always, outside tests) it costs one lookup.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

STAGES = ("archived", "copy", "validated", "locked", "merge", "publish")
LONGEST = 600.0  # never wait forever, whatever happens to the test that asked


def pause_at(stage: str) -> None:
    wanted = os.environ.get("COREHUB_PAUSE_AT")
    if not wanted or stage not in wanted.split(","):
        return
    from .config import settings

    marker = Path(os.environ.get("COREHUB_PAUSE_DIR") or settings().home) / f"paused-{stage}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    deadline = time.monotonic() + LONGEST
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
