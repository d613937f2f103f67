"""What the delivering agency gets back: receipt.json, report.html and rejected.csv per delivery.

Every value from a delivery is HTML-escaped in the report, and a CSV cell that a spreadsheet would
run as a formula (leading = + - @) is prefixed with an apostrophe.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import psycopg

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell_sql(expr: str) -> str:
    """SQL that neutralises a spreadsheet formula in a CSV cell."""
    expr = f"({expr})"
    return f"case when left({expr}, 1) in ('=', '+', '-', '@', chr(9), chr(13)) then '''' || {expr} else {expr} end"


def write_rejected_csv(conn: psycopg.Connection, delivery_id: int, file_columns: list[tuple[str, str]],
                       path: Path) -> None:
    """The quarantined rows of a delivery: row number, reasons, what broke, then the values as sent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = ", ".join(
        f"{safe_cell_sql(f'raw ->> {_literal(name)}')} as {_ident(name)}" for _, name in file_columns)
    query = f"""copy (select row_no as "ROW", array_to_string(reasons, ';') as "REASONS",
                             {safe_cell_sql('detail')} as "DETAIL"{', ' + values if values else ''}
                      from quarantine.row where delivery_id = {int(delivery_id)} order by row_no)
                to stdout (format csv, header)"""
    with open(path, "wb") as out, conn.cursor().copy(query) as cp:
        for data in cp:
            out.write(data)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def write_outputs(receipt: dict, report_dir: Path, *, gx: dict | None, encoding: str | None) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "receipt.json").write_text(json.dumps(receipt, ensure_ascii=False, indent=2), encoding="utf-8")
    (report_dir / "report.html").write_text(render_report(receipt, gx, encoding), encoding="utf-8")


def render_report(receipt: dict, gx: dict | None, encoding: str | None) -> str:
    e = html.escape
    status = receipt["status"]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in (
        ("File", receipt["file"]), ("Feed", receipt["feed"]), ("Delivery", receipt["delivery_id"]),
        ("SHA-256", receipt["sha256"]), ("Status", status), ("Encoding read", encoding or "-"),
        ("Rows read", receipt["rows_read"]), ("Rows loaded", receipt["rows_loaded"]),
        ("Rows quarantined", receipt["rows_quarantined"])))
    parts = [f"<h1>Delivery report: {e(receipt['file'])}</h1>", f"<table>{rows}</table>"]
    if status == "superseded":
        parts.append(f"<h2>Why nothing was loaded</h2><p class='reason'>{e(receipt['reason'])}</p>"
                     "<p>The file is not wrong: it arrived after a newer snapshot of the same province. "
                     "Nothing needs to be sent again.</p>")
    elif status == "abandoned":
        parts.append(f"<h2>Why nothing was loaded</h2><p class='reason'>{e(receipt['reason'])}</p>"
                     "<p>Nothing needs to be sent again: the file is processed again under a new delivery number.</p>")
    elif receipt.get("reason"):
        parts.append(f"<h2>Why the whole file was rejected</h2><p class='reason'>{e(receipt['reason'])}</p>"
                     "<p>Nothing from this file was loaded. Correct the file and deliver it again "
                     "(a corrected file has different bytes, so it is not taken for a duplicate).</p>")
    if receipt["rejections"]:
        items = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in receipt["rejections"].items())
        parts.append("<h2>Rows kept out of the core data</h2><table><tr><th>reason</th><th>rows</th></tr>"
                     f"{items}</table><p>Each row, with its values as sent and what broke which rule, is in "
                     "<a href='rejected.csv'>rejected.csv</a>.</p>")
    if receipt["findings"]:
        items = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in receipt["findings"].items())
        parts.append("<h2>Findings (rows loaded, to look into)</h2><table>"
                     f"<tr><th>finding</th><th>rows</th></tr>{items}</table>")
    if receipt.get("resolved"):
        parts.append(f"<p>Rows kept out of earlier deliveries that this one replaces (now resolved): "
                     f"{int(receipt['resolved'])}.</p>")
    if receipt.get("changes") and status not in ("rejected", "superseded", "abandoned"):
        items = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in receipt["changes"].items())
        parts.append(f"<h2>What the accepted rows changed</h2><table>{items}</table>")
    if gx and gx.get("report"):
        parts.append("<p>The Great Expectations validation of every rule: "
                     "<a href='validation.html'>validation.html</a>.</p>")
    elif gx:
        parts.append("<p>Every row was delivered before, byte for byte, and was validated then: "
                     "nothing new to validate.</p>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.reason{color:#a00;font-weight:bold}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(receipt['file'])}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
