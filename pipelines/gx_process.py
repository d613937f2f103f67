"""Great Expectations in a process of its own, for a large delivery.

Importing GX costs ~1.3 CPU-seconds. A thread of the ingest process that imports it holds the
GIL that the thread feeding COPY needs, and it competes with the server's backends for the
cores while they stage and check the rows. A child process started with the ingest imports GX
while the rows are copied (when one core is mostly idle: the COPY runs on one backend), in a
scheduling group of its own at the lowest priority, so that it takes only what the database
leaves. It then validates the checked table when asked, and exits when its input closes
(so also when the ingest process dies). Measured (1M rows): a first load 8.2-8.5 s -> 7.7-8.4 s,
a weekly snapshot 5.5 -> 4.5 s. A snapshot sent again whole validates nothing, and ends its
process unasked: the import, at that priority, took only what the server left (started only
once the rows were known to need validating, it came too late for a weekly snapshot, whose
receipt then waited 0.9 s for GX).

Protocol: one JSON request per line on its standard input, one JSON reply per line on its
standard output: {"result": {...}} or {"error": "..."}.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .config import PROJECT_ROOT


class ValidationError(RuntimeError):
    """GX could not validate the checked rows (an expectation failed to run, or GX's process ended)."""


class GxProcess:
    """The parent's handle on the child: validate() as gx_validation.validate does, close()."""

    def __init__(self):
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
        # a session of its own is a scheduling group of its own (Linux autogroup), whose priority
        # the child lowers; it also keeps a terminal's Ctrl-C for the ingest process to handle
        self.proc = subprocess.Popen([sys.executable, "-m", "pipelines.gx_process"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, text=True, encoding="utf-8",
                                     start_new_session=True)

    def validate(self, url: str, table: str, feed: str, report_path: Path, *, title: str) -> dict:
        request = {"url": url, "table": table, "feed": feed, "report": str(report_path), "title": title}
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise ValidationError(f"the GX process ended (exit code {self.proc.wait()}) before it validated {table}")
        reply = json.loads(line)
        if "error" in reply:
            raise ValidationError(reply["error"])
        return reply["result"]

    def close(self) -> None:
        """End the child (the ingest waited for any validation it asked for; a run that ended
        before, e.g. a rejected file, does not wait for GX to finish importing)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def _lowest_priority() -> None:
    """This process's scheduling group (its session, on Linux) at nice 19; elsewhere, nothing."""
    try:
        with open("/proc/self/autogroup", "w") as fh:
            fh.write("19")
    except OSError:
        pass


def serve(requests, replies) -> None:
    """Answer each request line until the input closes."""
    from . import contracts, gx_validation

    for line in requests:
        request = json.loads(line)
        try:
            result = gx_validation.validate(request["url"], request["table"], contracts.load(request["feed"]),
                                            Path(request["report"]), schema="stage", title=request["title"])
            reply = {"result": result}
        except Exception as exc:  # the ingest process raises it; the publication rolls back
            reply = {"error": str(exc) or type(exc).__name__}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main() -> None:
    _lowest_priority()
    # the replies keep standard output to themselves: whatever else is printed goes to stderr
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)
    os._exit(0)  # (tearing GX and pandas down would take longer than the work)


if __name__ == "__main__":
    main()
