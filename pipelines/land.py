"""Land parcels (TDDAT): geometry read, checked and measured while the delivery streams to COPY,
and overlaps between parcels found after it is merged.

A TDDAT delivery is a GeoJSON FeatureCollection or a CSV file with the geometry as WKT in HINH_THE.
Both become the same CSV text for COPY (decode.open_delivery hands them here): the attributes as
sent, HINH_THE as sent (WKT, or the feature's geometry as compact GeoJSON text), and four columns
computed from it that the contract (schemas/tddat.yaml) declares like any other:

  GEOM_ERROR    why the geometry is unusable (Shapely's is_valid_reason for an invalid polygon,
                e.g. "Self-intersection[106.1 21.2]"); the contract rejects the row as invalid_geometry
  GEOM_GEOJSON  the geometry as GeoJSON text, Shapely's writer: it reads back to the same doubles
  GEOM_AREA_M2  its geodesic area in m2 (0.01 m2): planar area in an equal-area projection of the
                WGS84 ellipsoid (EPSG:6933), vectorised with pyproj; for parcels the difference to
                the geodesic polygon area (pyproj.Geod) is far below a millionth
  GEOM_BBOX     its bounding box as a PostgreSQL box, for the GiST index that finds overlaps

Rows are processed in batches with Shapely's array functions, so memory holds one batch, never
the file; the GeoJSON is streamed with ijson (the yajl2 C backend), one feature at a time.
"""
from __future__ import annotations

import csv
import io
import json
import math
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .delivery import Rejection

BATCH = 4000
COMPUTED = ("GEOM_ERROR", "GEOM_GEOJSON", "GEOM_AREA_M2", "GEOM_BBOX")
GEOMETRY_COLUMN = "HINH_THE"
# thresholds of the finding parcel_overlap: more than a sliver is both of these
OVERLAP_MIN_M2 = 1.0
OVERLAP_MIN_SHARE = 0.01
# an upper bound of the m2 in one square degree anywhere (111.32 km x 111.7 km at the equator):
# a box intersection smaller than this bound allows cannot hold an overlap above the thresholds
M2_PER_SQUARE_DEGREE_MAX = 111_320.0 * 111_700.0


@lru_cache(maxsize=1)
def _to_equal_area():
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", "EPSG:6933", always_xy=True)


def _project(xy: np.ndarray) -> np.ndarray:
    x, y = _to_equal_area().transform(xy[:, 0], xy[:, 1])
    return np.column_stack([x, y])


def geodesic_areas(geoms: np.ndarray) -> np.ndarray:
    """Area in m2 of each lon/lat geometry (an array of Shapely geometries), vectorised."""
    import shapely

    if len(geoms) == 0:
        return np.zeros(0)
    return shapely.area(shapely.transform(geoms, _project))


def analyse(texts: list[str | None], kind: str) -> list[tuple[str, str, str, str]]:
    """(GEOM_ERROR, GEOM_GEOJSON, GEOM_AREA_M2, GEOM_BBOX) for each geometry text of a batch.

    kind: "wkt" or "geojson". An absent text gives four empty values (missing_required says why)."""
    import shapely

    n = len(texts)
    out = [("", "", "", "")] * n
    present = np.array([bool(t and t.strip()) for t in texts], dtype=bool)
    if not present.any():
        return out
    idx = np.flatnonzero(present)
    arr = np.array([texts[i] for i in idx], dtype=object)
    reader = shapely.from_wkt if kind == "wkt" else shapely.from_geojson
    geoms = reader(arr, on_invalid="ignore")
    errors: dict[int, str] = {}
    for j in np.flatnonzero(shapely.is_missing(geoms)):
        errors[j] = _unreadable(arr[j], kind)
    ok = ~shapely.is_missing(geoms)
    type_ids = shapely.get_type_id(geoms)
    empty = np.zeros(len(geoms), dtype=bool)
    empty[ok] = shapely.is_empty(geoms[ok])
    for j in np.flatnonzero(ok & ~np.isin(type_ids, (3, 6))):
        errors[j] = f"not a Polygon or MultiPolygon but a {geoms[j].geom_type}"
    for j in np.flatnonzero(ok & np.isin(type_ids, (3, 6)) & empty):
        errors[j] = "an empty polygon"
    usable = ok & np.isin(type_ids, (3, 6)) & ~empty
    bounds = np.full((len(geoms), 4), np.nan)
    bounds[usable] = shapely.bounds(geoms[usable])
    outside = usable & ((bounds[:, 0] < -180) | (bounds[:, 2] > 180) | (bounds[:, 1] < -90) | (bounds[:, 3] > 90))
    for j in np.flatnonzero(outside):
        errors[j] = (f"coordinates are not WGS84 longitude/latitude (x {bounds[j, 0]:g}..{bounds[j, 2]:g}, "
                     f"y {bounds[j, 1]:g}..{bounds[j, 3]:g})")
    usable &= ~outside
    valid = np.zeros(len(geoms), dtype=bool)
    valid[usable] = shapely.is_valid(geoms[usable])
    bad = usable & ~valid
    if bad.any():
        for j, reason in zip(np.flatnonzero(bad), shapely.is_valid_reason(geoms[bad])):
            errors[j] = reason
    good = np.flatnonzero(valid)
    areas = geodesic_areas(geoms[good])
    texts_out = shapely.to_geojson(geoms[good])
    result = list(out)
    for j, i in enumerate(idx):
        if j in errors:
            result[i] = (errors[j], "", "", "")
    for k, j in enumerate(good):
        xmin, ymin, xmax, ymax = (float(v) for v in bounds[j])
        result[idx[j]] = ("", texts_out[k], f"{float(areas[k]):.2f}", f"({xmax!r},{ymax!r}),({xmin!r},{ymin!r})")
    return result


def _unreadable(text: str, kind: str) -> str:
    import shapely

    reader = shapely.from_wkt if kind == "wkt" else shapely.from_geojson
    try:
        reader(text)
    except Exception as exc:  # noqa: BLE001 - GEOS's message is what the office needs to read
        message = str(exc).split("\n")[0]
        return f"not readable as {'WKT' if kind == 'wkt' else 'a GeoJSON geometry'}: {message}"[:300]
    return f"not readable as {'WKT' if kind == 'wkt' else 'a GeoJSON geometry'}"


# ---------------------------------------------------------------------------------- the decoder

def open_parcels(path: Path, ext: str, contract, encoding: str | None = None) -> tuple:
    """The TextFormat and CSV pieces (UTF-8 bytes) of a TDDAT delivery, GeoJSON or CSV with WKT."""
    from .decode import TextFormat, open_text

    if ext in ("geojson", "json"):
        sources = [c.source for c in contract.columns if c.source not in COMPUTED]
        header = sources + list(COMPUTED)
        return TextFormat("utf-8", ",", header), _geojson_pieces(path, sources)
    fmt, pieces = open_text(path, encoding)
    for name in fmt.header:
        if name.strip().upper() in COMPUTED:
            raise Rejection(f"the header names column {name.strip().upper()}, which the pipeline computes "
                            "itself: leave it out")
    if GEOMETRY_COLUMN not in [h.strip().upper() for h in fmt.header]:
        return fmt, pieces  # the header check rejects it, naming the header as sent
    header = list(fmt.header) + list(COMPUTED)
    return (TextFormat(fmt.encoding, fmt.delimiter, header),
            _csv_pieces(pieces, fmt.header, fmt.delimiter))


def _csv_pieces(pieces: Iterable[bytes], header: list[str], delimiter: str) -> Iterator[bytes]:
    upper = [h.strip().upper() for h in header]
    at = upper.index(GEOMETRY_COLUMN)

    def lines() -> Iterator[str]:
        for piece in pieces:
            yield from piece.decode("utf-8").splitlines(keepends=True)

    batch: list[list[str]] = []
    row_no = 0
    for row in csv.reader(lines(), delimiter=delimiter):
        row_no += 1
        if len(row) != len(header):
            more = "more" if len(row) > len(header) else "fewer"
            raise Rejection(f"a row has {more} fields than the header (near data row {row_no})")
        batch.append(row)
        if len(batch) >= BATCH:
            yield _emit(batch, at, upper, "wkt", delimiter)
            batch = []
    if batch:
        yield _emit(batch, at, upper, "wkt", delimiter)


def _emit(rows: list[list[str]], at: int, upper: list[str], kind: str, delimiter: str) -> bytes:
    """The rows with the four computed columns appended, as CSV bytes. A header line repeated in
    the middle of the file stays one (its computed columns carry their own names), so the checked
    pass recognises and drops it as it does in every feed."""
    texts = [row[at] for row in rows]
    repeats = [[v.strip().upper() for v in row] == upper for row in rows]
    results = analyse([None if r else t for t, r in zip(texts, repeats)], kind)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    for row, result, repeat in zip(rows, results, repeats):
        writer.writerow(row + (list(COMPUTED) if repeat else list(result)))
    return buf.getvalue().encode("utf-8")


def _geojson_pieces(path: Path, sources: list[str]) -> Iterator[bytes]:
    import ijson

    _require_feature_collection(path)
    by_name = {s.upper(): i for i, s in enumerate(sources)}
    geometry_at = by_name[GEOMETRY_COLUMN]
    upper = [s.upper() for s in sources]
    batch: list[list[str]] = []
    count = 0
    with _json_stream(path) as fh:
        try:
            for feature in ijson.items(fh, "features.item", use_float=True):
                batch.append(_feature_row(feature, by_name, geometry_at, len(sources), count + 1))
                count += 1
                if len(batch) >= BATCH:
                    yield _emit(batch, geometry_at, upper, "geojson", ",")
                    batch = []
        except ijson.JSONError as exc:
            raise Rejection(f"the GeoJSON is not valid JSON after feature {count}: {exc}") from None
    if batch:
        yield _emit(batch, geometry_at, upper, "geojson", ",")
    if count == 0:
        raise Rejection("the FeatureCollection has no features (no \"features\" array, or an empty one)")


class _json_stream:
    """The file opened for ijson, past a UTF-8 BOM if it has one."""

    def __init__(self, path: Path):
        self.fh = open(path, "rb")
        if self.fh.read(3) != b"\xef\xbb\xbf":
            self.fh.seek(0)

    def __enter__(self):
        return self.fh

    def __exit__(self, *exc):
        self.fh.close()


def _require_feature_collection(path: Path) -> None:
    """Reject anything but a FeatureCollection, before a row is staged. The top-level "type" is
    read with the C parser; writers put it first, so this reads a few bytes."""
    import ijson

    with _json_stream(path) as fh:
        head = fh.read(64).lstrip()
        if not head.startswith(b"{"):
            what = "a JSON array" if head.startswith(b"[") else "not a JSON object"
            raise Rejection(f"the GeoJSON must be a FeatureCollection object; the file is {what}")
    with _json_stream(path) as fh:
        try:
            kind = next(ijson.items(fh, "type"), None)
        except ijson.JSONError as exc:
            raise Rejection(f"the file is not valid JSON: {exc}") from None
    if kind != "FeatureCollection":
        shown = f"a {kind}" if isinstance(kind, str) else "an object without a \"type\""
        raise Rejection(f"the GeoJSON must be a FeatureCollection; the file is {shown}")


def _feature_row(feature, by_name: dict[str, int], geometry_at: int, width: int, number: int) -> list[str]:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise Rejection(f"feature {number} of the FeatureCollection is not a GeoJSON Feature")
    row = [""] * width
    for name, value in (feature.get("properties") or {}).items():
        at = by_name.get(str(name).strip().upper())
        if at is not None and at != geometry_at:
            row[at] = _property_text(value)
    geometry = feature.get("geometry")
    if geometry is not None:
        row[geometry_at] = json.dumps(geometry, separators=(",", ":"), ensure_ascii=False)
    return row


def _property_text(value) -> str:
    """A property as the CSV variant would carry it: numbers with a decimal comma (12.5 -> 12,5),
    whole numbers without a fraction, text NFC."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        text = repr(value)
        if "e" in text:  # 1e-05: written out in full
            from decimal import Decimal

            text = format(Decimal(text), "f")
        return text.replace(".", ",")
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return value if unicodedata.is_normalized("NFC", value) else unicodedata.normalize("NFC", value)


# ---------------------------------------------------------------------------------- overlaps

BOXES = """
select survey_ward_code, parcel_id, (bbox[1])[0], (bbox[1])[1], (bbox[0])[0], (bbox[0])[1], computed_area_m2::float8
from store.land_parcel
where valid_to = 'infinity' and recorded_to = 'infinity' and scope = %(scope)s
order by survey_ward_code
"""


def _commune_pairs(ids: list[str], boxes: np.ndarray, areas: np.ndarray) -> Iterator[tuple[str, str]]:
    """Candidate pairs of one commune: boxes that intersect (an STRtree, not all pairs), kept when
    what the two boxes share could hold an overlap above the thresholds."""
    import shapely

    if len(ids) < 2:
        return
    geoms = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    if not len(left):
        return
    w = np.minimum(boxes[left, 2], boxes[right, 2]) - np.maximum(boxes[left, 0], boxes[right, 0])
    h = np.minimum(boxes[left, 3], boxes[right, 3]) - np.maximum(boxes[left, 1], boxes[right, 1])
    shared = np.clip(w, 0, None) * np.clip(h, 0, None) * M2_PER_SQUARE_DEGREE_MAX
    keep = (shared > OVERLAP_MIN_M2) & (shared > OVERLAP_MIN_SHARE * np.minimum(areas[left], areas[right]))
    for i, j in zip(left[keep], right[keep]):
        yield ids[i], ids[j]


def _candidates(conn, scope: str, delivery_id: int) -> list[tuple[str, str]]:
    """Every candidate pair of the province, streaming its parcels' boxes commune by commune."""
    pairs: list[tuple[str, str]] = []
    commune, ids, boxes, areas = None, [], [], []

    def flush():
        if ids:
            pairs.extend(_commune_pairs(ids, np.array(boxes, dtype=float), np.array(areas, dtype=float)))

    with conn.cursor(name=f"parcel_boxes_{delivery_id}") as cur:
        cur.itersize = 20_000
        cur.execute(BOXES, {"scope": scope})
        for ward, pid, xmin, ymin, xmax, ymax, area in cur:
            if ward != commune:
                flush()
                commune, ids, boxes, areas = ward, [], [], []
            ids.append(pid)
            boxes.append((xmin, ymin, xmax, ymax))
            areas.append(area)
    flush()
    return pairs


def find_overlaps(conn, scope: str, delivery_id: int) -> int:
    """Recompute store.land_parcel_overlap for the current parcels of a province: candidate pairs
    from a spatial index of the boxes per survey commune (Shapely's STRtree; the province's boxes
    stream in commune order, so memory holds one commune), then exact intersection areas with
    Shapely for the candidates only. Returns the number of overlapping pairs."""
    import shapely

    conn.execute("delete from store.land_parcel_overlap where scope = %s", (scope,))
    pairs = _candidates(conn, scope, delivery_id)
    found = []
    for at in range(0, len(pairs), BATCH):
        batch = pairs[at:at + BATCH]
        wanted = sorted({p for pair in batch for p in pair})
        rows = conn.execute("select parcel_id, geometry, computed_area_m2::float8 from core.land_parcel "
                            "where parcel_id = any(%s)", (wanted,)).fetchall()
        geometry = {pid: (g, a) for pid, g, a in rows}
        a = shapely.from_geojson(np.array([geometry[p][0] for p, _ in batch], dtype=object))
        b = shapely.from_geojson(np.array([geometry[q][0] for _, q in batch], dtype=object))
        areas = geodesic_areas(shapely.intersection(a, b))
        for (p, q), area in zip(batch, areas):
            if area > OVERLAP_MIN_M2 and area > OVERLAP_MIN_SHARE * min(geometry[p][1], geometry[q][1]):
                found.append((p, q, round(float(area), 2)))
    if found:
        with conn.cursor().copy("copy store.land_parcel_overlap (scope, parcel_id, other_parcel_id, overlap_m2, "
                                "delivery_id) from stdin") as cp:
            for p, q, area in found:
                cp.write_row((scope, p, q, area, delivery_id))
                cp.write_row((scope, q, p, area, delivery_id))
    return len(found)


def after_merge(conn, contract, scope: str, delivery_id: int) -> None:
    """The TDDAT contract's after_merge step (pipelines.ingest calls it before counting findings)."""
    find_overlaps(conn, scope, delivery_id)
