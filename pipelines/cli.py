"""The `corehub` command. Results go to stdout; logs to stderr."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def _ingest(args) -> int:
    from .ingest import ingest_file

    path = Path(args.path)
    if not path.is_file():
        print(f"corehub ingest: no such file: {path}", file=sys.stderr)
        return 2
    receipt = ingest_file(path)
    if args.json:
        print(json.dumps(receipt, ensure_ascii=False))
    else:
        print(f"{receipt['file']}: {receipt['status']}  read {receipt['rows_read']}  loaded "
              f"{receipt['rows_loaded']}  quarantined {receipt['rows_quarantined']}  report {receipt['report']}")
        if receipt.get("reason"):
            print(f"reason: {receipt['reason']}")
    return 1 if receipt["status"] == "rejected" else 0  # superseded: processed, not an error of the file


def _url(args) -> int:
    from . import warehouse
    from .migrations import ensure_ready

    url = warehouse.url()
    ensure_ready(url)
    if args.role:  # a role of sql/020_roles.sql; on an external server, how to give it a login
        from .config import settings
        from .roles import external_instructions, role_url

        print(role_url(url, args.role))
        if settings().warehouse_url:
            print(external_instructions(args.role), file=sys.stderr)
        return 0
    print(url)
    return 0


def _serve(args) -> int:
    from .api import serve

    serve(args.host, args.port)
    return 0


def _apikey(args) -> int:
    from .apikeys import main as apikey_main

    return apikey_main(args)


def _stop(args) -> int:
    from . import warehouse

    print("stopped" if warehouse.stop() else "not running")
    return 0


def _generate(args) -> int:
    from .generate import generate

    manifest = generate(args.feed.upper(), args.rows, args.province, args.defect_rate, Path(args.out),
                        seed=args.seed)
    print(json.dumps(manifest, ensure_ascii=False))
    return 0


def _status(args) -> int:
    from .status import main as status_main

    return status_main(args)


def _quarantine(args) -> int:
    from .quarantine import main as quarantine_main

    return quarantine_main(args)


def _demo(args) -> int:
    from .demo import run_demo

    return run_demo()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "airflow", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="corehub", description="corehub: core shared databases from agency extracts")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="process one delivery now and print its receipt")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print the receipt as one JSON line")
    p.set_defaults(func=_ingest)

    p = sub.add_parser("url", help="print the warehouse URL (starts the embedded warehouse if needed)")
    p.add_argument("--role", choices=["core_reader", "core_public", "core_writer", "core_api"],
                   help="the URL for this role instead (external server: also how to give it a login)")
    p.set_defaults(func=_url)

    p = sub.add_parser("stop", help="stop the embedded warehouse")
    p.set_defaults(func=_stop)

    p = sub.add_parser("generate", help="write a sample delivery with known injected defects")
    p.add_argument("feed")
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--province", default="01")
    p.add_argument("--defect-rate", type=float, default=0.02)
    p.add_argument("--out", default=".")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_generate)

    p = sub.add_parser("serve", help="run the lookup API (OpenAPI at /openapi.json)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=_serve)

    p = sub.add_parser("apikey", help="API keys of the lookup API's clients (the new key is the last line)")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("name", nargs="?", help="create: the client's name; revoke: a key id or a client name")
    p.add_argument("--scope", default="", help="create: comma-separated scopes: verify, enterprise, land, rights")
    p.set_defaults(func=_apikey)

    p = sub.add_parser("status", help="operations: last delivery per feed and province, overdue snapshots, "
                                      "reject rates, timings")
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.add_argument("--html", metavar="FILE", help="also write the status as an HTML page")
    p.add_argument("--as-of", help="status at this ISO date/time (UTC unless it says), default now")
    p.add_argument("--weeks", type=int, default=8, help="weeks of reject rates and timings (default 8)")
    p.set_defaults(func=_status)

    p = sub.add_parser("quarantine", help="rows of a feed kept out of the core, with counts per reason "
                                          "(--open: those still waiting for the agency)")
    p.add_argument("feed")
    p.add_argument("--open", action="store_true", help="only rows not resolved by a later delivery")
    p.add_argument("--province", help="only this province's deliveries")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--limit", type=int, default=100, help="rows listed at most (counts are complete; default 100)")
    p.set_defaults(func=_quarantine)

    p = sub.add_parser("demo", help="sample deliveries through every DAG, then a summary")
    p.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    import psycopg

    try:
        return args.func(args)
    except psycopg.OperationalError as exc:  # the warehouse cannot be reached: say so, without its password
        from .config import redact_url, settings

        where = redact_url(settings().warehouse_url) if settings().warehouse_url else "the embedded warehouse"
        message = " ".join(str(exc).split())
        print(f"corehub {args.command}: cannot use the warehouse ({where}): {message}", file=sys.stderr)
        return 3


def run() -> None:
    """The `corehub` program: main(), then, its output flushed, an exit that skips tearing the
    interpreter down (with GX and pandas imported, that took half a second after the work was done)."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
