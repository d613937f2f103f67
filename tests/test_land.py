"""TDDAT (land parcels) and GCN (certificates and holders) end to end against a real warehouse:
geometry checks (bow tie, overlap, area), GeoJSON and WKT variants, survey-time commune codes,
co-holders and shares, holders resolved at read time, snapshots and history."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Geod

from pipelines import land
from pipelines.ingest import ingest_file
from population_helpers import CUTRU_HEADER, csv_text, deliver, person, write

TDDAT_HEADER = ["MA_XA", "SO_TO", "SO_THUA", "DIEN_TICH", "MUC_DICH", "DIA_CHI", "HINH_THE"]
GCN_HEADER = ["SO_PHAT_HANH", "SO_VAO_SO", "NGAY_CAP", "MA_XA", "SO_TO", "SO_THUA", "LOAI_CHU", "SO_DINH_DANH_CHU",
              "MA_SO_DN_CHU", "HO_TEN_CHU", "TY_LE", "TINH_TRANG"]
DKKD_HEADER = ["MA_SO_DN", "TEN_DN", "LOAI_HINH", "NGAY_THANH_LAP", "TINH_TRANG", "MA_TINH_TRU_SO", "MA_XA_TRU_SO"]
PARCEL_COLUMNS = ("parcel_id, ward_code, survey_ward_code, sheet_no, parcel_no, area_m2, computed_area_m2, "
                  "land_use_codes, address, geometry")
RIGHT_COLUMNS = ("certificate_serial, parcel_id, issued_on, holder_type, holder_person_id, holder_enterprise_code, "
                 "holder_name, share_pct, status")
UTC = dt.timezone.utc
GEOD = Geod(ellps="WGS84")

# a corner near Hoan Kiem lake; parcels are rectangles of D degrees (about 10.4 m x 11.1 m)
X0, Y0, D = 105.8520, 21.0280, 0.0001


def square(i: int = 0, j: int = 0, w: float = D, h: float = D, dx: float = 0.0) -> shapely.Polygon:
    x, y = X0 + i * D + dx, Y0 + j * D
    return shapely.box(x, y, x + w, y + h, ccw=False)


def wkt(g) -> str:
    return shapely.to_wkt(g, rounding_precision=-1)


def geod_area(g) -> float:
    return abs(GEOD.geometry_area_perimeter(g)[0])


def comma(x: float) -> str:
    return f"{x:.1f}".replace(".", ",")


def parcel(ward="00004", sheet="12", no="345", geom=None, area=None, use="ONT+CLN", address="12 Hàng Bạc",
           shape: str | None = None) -> list[str]:
    geom = square() if geom is None else geom
    return [ward, sheet, no, comma(geod_area(geom)) if area is None else area, use, address,
            wkt(geom) if shape is None else shape]


def tddat(inbox: Path, name: str, rows: list[list[str]], header=TDDAT_HEADER) -> dict:
    return deliver(inbox, name, header, rows)


def geojson_text(rows: list[list[str]], header=TDDAT_HEADER, **top) -> str:
    features = []
    for row in rows:
        props = {h: v for h, v in zip(header, row) if h != "HINH_THE"}
        geom = shapely.from_wkt(row[header.index("HINH_THE")])
        features.append({"type": "Feature", "properties": props, "geometry": json.loads(shapely.to_geojson(geom))})
    return json.dumps({"type": "FeatureCollection", **top, "features": features}, ensure_ascii=False)


def parcels(db, where="true") -> list[tuple]:
    return db.execute(f"select {PARCEL_COLUMNS} from core.land_parcel where {where} order by parcel_id").fetchall()


def rights(db, where="true") -> list[tuple]:
    return db.execute(f"select {RIGHT_COLUMNS} from core.land_right where {where} "
                      "order by certificate_serial, holder_person_id, holder_enterprise_code").fetchall()


def quarantined(db) -> list[tuple]:
    return db.execute("select row_no, reasons, detail from quarantine.row order by delivery_id, row_no").fetchall()


def area_of(g) -> Decimal:
    """What the pipeline stores as computed_area_m2 (checked against pyproj.Geod below)."""
    a = float(land.geodesic_areas(shapely.from_wkt([wkt(g)]))[0])
    assert abs(a - geod_area(g)) < 0.005, (a, geod_area(g))
    return Decimal(f"{a:.2f}")


def receipt(r: dict, status="loaded", read=0, loaded=None, quarantined=0, rejections=None, findings=None,
            changes=None) -> dict:
    return {"delivery_id": r["delivery_id"], "feed": r["feed"], "file": r["file"], "sha256": r["sha256"],
            "status": status, "rows_read": read, "rows_loaded": read - quarantined if loaded is None else loaded,
            "rows_quarantined": quarantined, "rejections": rejections or {}, "findings": findings or {},
            "changes": changes or {"new": 0, "changed": 0, "unchanged": 0, "removed": 0},
            "report": r["report"], "rejected_rows": r["rejected_rows"]}


# ------------------------------------------------------------------------------------------ parcels

def test_clean_parcels_load_with_exact_receipt_and_rows(warehouse, db, inbox):
    multi = shapely.MultiPolygon([square(2), square(4)])
    rows = [
        parcel(ward="00004", sheet="12", no="345", area="115,8", use="ONT+CLN"),
        # survey-time commune 00103 (pre-2025 unit, now part of ward 00611); area with thousands and comma
        parcel(ward="00103", sheet="3", no="7", geom=square(0, 0, 3 * D, 3 * D), area="1.042,3", use=" odt ",
               address=""),
        parcel(ward="00004", sheet="12", no="346", geom=multi, area=comma(geod_area(multi)), use="LUC+NTS+HNK"),
    ]
    r = tddat(inbox, "TDDAT_01_20261120_001.csv", rows)
    assert r == receipt(r, read=3, changes={"new": 3, "changed": 0, "unchanged": 0, "removed": 0})
    assert parcels(db) == [
        ("00004-12-345", "00004", "00004", "12", "345", Decimal("115.8"), area_of(square()), ["ONT", "CLN"],
         "12 Hàng Bạc", shapely.to_geojson(square())),
        ("00004-12-346", "00004", "00004", "12", "346", Decimal(comma(geod_area(multi)).replace(",", ".")),
         area_of(multi), ["LUC", "NTS", "HNK"], "12 Hàng Bạc", shapely.to_geojson(multi)),
        ("00103-3-7", "00611", "00103", "3", "7", Decimal("1042.3"), area_of(square(0, 0, 3 * D, 3 * D)), ["ODT"],
         None, shapely.to_geojson(square(0, 0, 3 * D, 3 * D))),
    ]
    # the stored box is the geometry's bounds
    assert db.execute("select bbox::text from store.land_parcel where parcel_no = '345'").fetchone() == (
        f"({X0 + D!r},{Y0 + D!r}),({X0!r},{Y0!r})",)
    assert db.execute("select distinct valid_from, valid_to, recorded_to from history.land_parcel").fetchall() == [
        (dt.datetime(2026, 11, 19, 17, tzinfo=UTC), None, None)]


def test_geojson_and_wkt_deliveries_give_identical_rows(warehouse, db, inbox, tmp_path):
    rows = [parcel(no="1", area="115,8"), parcel(no="2", geom=square(1), use="ODT", address="Số 3 Hàng Bạc"),
            parcel(ward="00103", sheet="3", no="7", geom=shapely.MultiPolygon([square(5), square(7)]), area="231,6")]
    r = tddat(inbox, "TDDAT_01_20261120_001.csv", rows)
    assert (r["status"], r["rows_loaded"]) == ("loaded", 3)
    from_csv = parcels(db)
    versions = db.execute("select count(*) from store.land_parcel").fetchone()
    # the same parcels as a FeatureCollection (numbers as JSON numbers: 115.8 means 115,8): every row is
    # read, checked and merged again (HINH_THE is other text), and nothing changes
    text = geojson_text([[*row[:3], float(row[3].replace(",", ".")), *row[4:]] for row in rows], name="parcels",
                        crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}})
    g = ingest_file(write(inbox, "TDDAT_01_20261120_002.geojson", text))
    assert g == receipt(g, read=3, changes={"new": 0, "changed": 0, "unchanged": 3, "removed": 0})
    assert parcels(db) == from_csv
    assert db.execute("select count(*) from store.land_parcel").fetchone() == versions
    # and as a first delivery on another warehouse state: the same rows
    db.execute("delete from store.land_parcel")
    g = ingest_file(write(inbox, "TDDAT_01_20261120_003.geojson", text.replace("parcels", "parcels 2")))
    assert g["changes"] == {"new": 3, "changed": 0, "unchanged": 0, "removed": 0}
    assert parcels(db) == from_csv


def test_geometry_round_trips_exactly(warehouse, db, inbox):
    # coordinates with all 17 significant digits a double can need
    ring = [(105.85412345678901, 21.028123456789012), (105.85512345678903, 21.02812345678907),
            (105.85512345678903, 21.029123456789011), (105.85412345678901, 21.028123456789012)]
    g = shapely.Polygon(ring)
    tddat(inbox, "TDDAT_01_20261120_001.csv", [parcel(geom=g, area=comma(geod_area(g)))])
    (stored,) = db.execute("select geometry from core.land_parcel").fetchone()
    back = shapely.from_geojson(stored)
    assert json.loads(stored)["type"] == "Polygon"
    assert shapely.get_coordinates(back).tolist() == [list(p) for p in ring]


def test_invalid_geometries_are_rejected_with_the_reason(warehouse, db, inbox):
    bow_tie = f"POLYGON (({X0} {Y0}, {X0 + D} {Y0 + D}, {X0 + D} {Y0}, {X0} {Y0 + D}, {X0} {Y0}))"
    rows = [
        parcel(no="1"),
        parcel(no="2", shape=bow_tie, area="60"),                                        # self-intersection
        parcel(no="3", shape="POLYGON ((105.85 21.02, 105.86 21.02"),                    # unreadable WKT
        parcel(no="4", shape=f"POINT ({X0} {Y0})"),                                      # not a polygon
        parcel(no="5", shape="POLYGON EMPTY"),                                           # empty
        parcel(no="6", shape="POLYGON ((587000 2325000, 587010 2325000, 587010 2325010, 587000 2325000))"),  # VN-2000 metres
        parcel(no="7", shape=""),                                                        # no geometry at all
    ]
    r = tddat(inbox, "TDDAT_01_20261120_001.csv", rows)
    assert r == receipt(r, status="loaded_with_rejections", read=7, quarantined=6,
                        rejections={"missing_required": 1, "invalid_geometry": 5},
                        changes={"new": 1, "changed": 0, "unchanged": 0, "removed": 0})
    assert quarantined(db) == [
        (2, ["invalid_geometry"], f"invalid_geometry: GEOM_ERROR=Self-intersection[{X0 + D / 2} {Y0 + D / 2}]"),
        (3, ["invalid_geometry"], "invalid_geometry: GEOM_ERROR=not readable as WKT: ParseException: "
                                  "Expected word but encountered end of stream"),
        (4, ["invalid_geometry"], "invalid_geometry: GEOM_ERROR=not a Polygon or MultiPolygon but a Point"),
        (5, ["invalid_geometry"], "invalid_geometry: GEOM_ERROR=an empty polygon"),
        (6, ["invalid_geometry"], "invalid_geometry: GEOM_ERROR=coordinates are not WGS84 longitude/latitude "
                                  "(x 587000..587010, y 2.325e+06..2.32501e+06)"),
        (7, ["missing_required"], "missing_required: HINH_THE"),
    ]
    # what the office sent is kept in the quarantine, the bow tie as WKT
    assert db.execute("select raw->>'HINH_THE' from quarantine.row where row_no = 2").fetchone() == (bow_tie,)
    assert [p[0] for p in parcels(db)] == ["00004-12-1"]


def test_bow_tie_in_a_geojson_delivery(warehouse, db, inbox):
    bow_tie = {"type": "Polygon", "coordinates": [[[0.5, 0.5], [1.5, 1.5], [1.5, 0.5], [0.5, 1.5], [0.5, 0.5]]]}
    text = json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"ma_xa": "00004", "so_to": 1, "so_thua": 1, "dien_tich": 12345.5,
                                           "muc_dich": "LUC"}, "geometry": bow_tie},
        {"type": "Feature", "properties": {"MA_XA": "00004", "SO_TO": "1", "SO_THUA": "2", "DIEN_TICH": "115,8",
                                           "MUC_DICH": "ONT"}, "geometry": None}]})
    r = ingest_file(write(inbox, "TDDAT_01_20261120_001.geojson", text))
    assert r == receipt(r, status="loaded_with_rejections", read=2, quarantined=2,
                        rejections={"missing_required": 1, "invalid_geometry": 1})
    assert quarantined(db) == [
        (1, ["invalid_geometry"], "invalid_geometry: GEOM_ERROR=Self-intersection[1 1]"),
        (2, ["missing_required"], "missing_required: HINH_THE"),
    ]
    assert db.execute("select raw->>'DIEN_TICH', raw->>'HINH_THE' from quarantine.row where row_no = 1").fetchone() == (
        "12345,5", json.dumps(bow_tie, separators=(",", ":")))


def test_every_attribute_defect_gets_its_code(warehouse, db, inbox):
    rows = [
        parcel(no="1"),
        parcel(no="2", area="115.8"),                 # invalid_number: a dot is no decimal point
        parcel(no="3", area="0"),                     # invalid_number: no area
        parcel(no="4", area="1,2,3"),                 # invalid_number
        parcel(no="5", use="ONT+XYZ"),                # invalid_code: unknown code
        parcel(no="6", use="ONT+ONT"),                # invalid_code: twice
        parcel(no="7", use="ONT+"),                   # invalid_code: empty part
        parcel(no="123456"),                          # invalid_parcel_ref: 6 digits
        parcel(sheet="12a", no="9"),                  # invalid_parcel_ref
        parcel(ward="99999", no="10"),                # unknown_admin_unit
        parcel(no="11", use=""),                      # missing_required
        parcel(no="12", geom=square(1)), parcel(no="12", geom=square(2)),  # duplicate_key
    ]
    r = tddat(inbox, "TDDAT_01_20261120_001.csv", rows)
    assert (r["rows_read"], r["rows_loaded"], r["rows_quarantined"]) == (13, 1, 12)
    assert r["rejections"] == {"missing_required": 1, "unknown_admin_unit": 1, "invalid_parcel_ref": 2,
                               "invalid_number": 3, "invalid_code": 3, "duplicate_key": 2}
    assert quarantined(db) == [
        (2, ["invalid_number"], "invalid_number: DIEN_TICH=115.8"),
        (3, ["invalid_number"], "invalid_number: DIEN_TICH=0"),
        (4, ["invalid_number"], "invalid_number: DIEN_TICH=1,2,3"),
        (5, ["invalid_code"], "invalid_code: MUC_DICH=ONT+XYZ"),
        (6, ["invalid_code"], "invalid_code: MUC_DICH=ONT+ONT"),
        (7, ["invalid_code"], "invalid_code: MUC_DICH=ONT+"),
        (8, ["invalid_parcel_ref"], "invalid_parcel_ref: SO_THUA=123456"),
        (9, ["invalid_parcel_ref"], "invalid_parcel_ref: SO_TO=12a"),
        (10, ["unknown_admin_unit"], "unknown_admin_unit: MA_XA=99999"),
        (11, ["missing_required"], "missing_required: MUC_DICH"),
        (12, ["duplicate_key"], "duplicate_key: MA_XA=00004 SO_TO=12 SO_THUA=12"),
        (13, ["duplicate_key"], "duplicate_key: MA_XA=00004 SO_TO=12 SO_THUA=12"),
    ]


@pytest.mark.parametrize("text,expected", [
    ("125,5", Decimal("125.5")), ("125", Decimal("125")), ("1.250,75", Decimal("1250.75")),
    ("1.000.000", Decimal("1000000")), ("0,5", Decimal("0.5")), ("125.5", None), (",5", None), ("12,", None),
    ("1,2,3", None), ("-5", None), ("12 m2", None),
])
def test_decimal_comma(db, text, expected):
    assert db.execute("select rules.parse_decimal(%s)", (text,)).fetchone() == (expected,)


@pytest.mark.parametrize("text,expected", [
    ("ONT", ["ONT"]), ("ont + cln", ["ONT", "CLN"]), ("HNK+CNT+RSN", ["HNK", "CNT", "RSN"]), ("ONT+ONT", None),
    ("ONX", None), ("+ONT", None), ("ONT,CLN", None),
])
def test_land_use_codes(db, text, expected):
    assert db.execute("select rules.land_use_codes(%s)", (text,)).fetchone() == (expected,)


def test_area_mismatch_is_a_finding(warehouse, db, inbox):
    true_area = geod_area(square())
    rows = [parcel(no="1", area=comma(true_area * 1.049)),     # within 5%
            parcel(no="2", geom=square(1), area=comma(true_area * 1.06)),  # 6% more on paper
            parcel(no="3", geom=square(2), area=comma(true_area * 0.90))]  # 10% less
    r = tddat(inbox, "TDDAT_01_20261120_001.csv", rows)
    assert r == receipt(r, read=3, findings={"area_mismatch": 2},
                        changes={"new": 3, "changed": 0, "unchanged": 0, "removed": 0})
    assert len(parcels(db)) == 3


def test_overlapping_parcels_are_a_finding_on_both(warehouse, db, inbox):
    rows = [
        parcel(no="1"),
        parcel(no="2", geom=square(0, 0, dx=D / 2)),        # half of parcel 1: overlap about 58 m2
        parcel(no="3", geom=square(1)),                     # overlaps 2's right half
        parcel(no="4", geom=square(3, 0, dx=D * 0.001)),    # overlaps 5 by a sliver (0.1% of its width)
        parcel(no="5", geom=square(4)),
        parcel(no="6", geom=square(6)),                     # only touches 7: no overlap
        parcel(no="7", geom=square(7)),
        parcel(ward="00103", no="8", geom=square(6)),       # the same place, another survey commune
    ]
    r = tddat(inbox, "TDDAT_01_20261120_001.csv", rows)
    assert r == receipt(r, read=8, findings={"parcel_overlap": 3},
                        changes={"new": 8, "changed": 0, "unchanged": 0, "removed": 0})
    half = area_of(square(0, 0, D / 2))
    got = db.execute("select parcel_id, other_parcel_id, overlap_m2 from core.land_parcel_overlap order by 1, 2").fetchall()
    assert [g[:2] for g in got] == [("00004-12-1", "00004-12-2"), ("00004-12-2", "00004-12-1"),
                                    ("00004-12-2", "00004-12-3"), ("00004-12-3", "00004-12-2")]
    assert all(abs(g[2] - half) < Decimal("0.05") for g in got), (got, half)
    # the next snapshot without parcel 2: the overlaps are gone with it
    r2 = tddat(inbox, "TDDAT_01_20261127_001.csv", [row for row in rows if row[2] != "2"])
    assert (r2["changes"], r2["findings"]) == ({"new": 0, "changed": 0, "unchanged": 7, "removed": 1}, {})
    assert db.execute("select count(*) from core.land_parcel_overlap").fetchone() == (0,)


def test_overlap_candidates_come_from_a_spatial_index_per_commune(monkeypatch):
    import shapely

    queried = []
    real = shapely.STRtree.query
    monkeypatch.setattr(shapely.STRtree, "query", lambda self, *a, **k: queried.append(1) or real(self, *a, **k))
    boxes = np.array([[0, 0, 1e-4, 1e-4], [0.5e-4, 0, 1.5e-4, 1e-4], [1.5e-4, 0, 2.5e-4, 1e-4], [3e-4, 0, 4e-4, 1e-4],
                      [3.999e-4, 0, 5e-4, 1e-4]])
    pairs = list(land._commune_pairs(["a", "b", "c", "d", "e"], boxes, np.array([120.0] * 5)))
    # a-b share half a box; b-c only touch; d-e share a sliver (1 cm wide: under 1 m2)
    assert pairs == [("a", "b")] and queried == [1]


def test_parcel_boxes_are_gist_indexed(warehouse, db, inbox):
    tddat(inbox, "TDDAT_01_20261120_001.csv", [parcel(no=str(i), geom=square(i % 40, i // 40)) for i in range(400)])
    db.execute("analyze store.land_parcel")
    query = "select parcel_id from core.land_parcel p join store.land_parcel s using (parcel_id) where s.bbox && %s::box"
    area = f"({X0 + 2.5 * D},{Y0 + 0.5 * D}),({X0 + 1.5 * D},{Y0})"
    plan = json.dumps(db.execute("explain (format json) select parcel_id from store.land_parcel where bbox && %s::box",
                                 (area,)).fetchone()[0])
    assert "land_parcel_bbox" in plan, plan
    assert sorted(r[0] for r in db.execute(query, (area,))) == ["00004-12-1", "00004-12-2"]


def test_a_rerun_changes_nothing_and_a_snapshot_removes_a_parcel(warehouse, db, inbox):
    rows = [parcel(no="1"), parcel(no="2", geom=square(1)), parcel(no="3", geom=square(2))]
    first = tddat(inbox, "TDDAT_01_20261120_001.csv", rows)
    store = "select version_id, raw_hash, recorded_from, valid_to::text from store.land_parcel order by 1"
    before = db.execute(store).fetchall()
    # the same content in other bytes (CRLF, a BOM), and then as GeoJSON: nothing changes
    again = ingest_file(write(inbox, "TDDAT_01_20261120_002.csv", "\ufeff" + csv_text(TDDAT_HEADER, rows),
                              newline="\r\n"))
    assert again == receipt(again, read=3, changes={"new": 0, "changed": 0, "unchanged": 3, "removed": 0})
    assert db.execute(store).fetchall() == before
    dup = ingest_file(Path(inbox / "TDDAT_01_20261120_001.csv"))
    assert (dup["status"], dup["delivery_id"]) == ("duplicate", first["delivery_id"])
    # a week later parcel 2 is gone and parcel 3 was re-surveyed
    week2 = tddat(inbox, "TDDAT_01_20261127_001.csv", [rows[0], parcel(no="3", geom=square(2), area="120,0")])
    assert week2["changes"] == {"new": 0, "changed": 1, "unchanged": 1, "removed": 1}
    sent = Decimal(comma(geod_area(square())).replace(",", "."))
    assert [(p[0], p[5]) for p in parcels(db)] == [("00004-12-1", sent), ("00004-12-3", Decimal("120.0"))]
    assert db.execute("select parcel_id, area_m2, valid_from, valid_to from history.land_parcel "
                      "where recorded_to is null and parcel_id in ('00004-12-2', '00004-12-3') "
                      "order by parcel_id, valid_from").fetchall() == [
        ("00004-12-2", sent, dt.datetime(2026, 11, 19, 17, tzinfo=UTC), dt.datetime(2026, 11, 26, 17, tzinfo=UTC)),
        ("00004-12-3", sent, dt.datetime(2026, 11, 19, 17, tzinfo=UTC), dt.datetime(2026, 11, 26, 17, tzinfo=UTC)),
        ("00004-12-3", Decimal("120.0"), dt.datetime(2026, 11, 26, 17, tzinfo=UTC), None),
    ]


@pytest.mark.parametrize("text,reason", [
    ('{"type": "Feature", "properties": {}, "geometry": null}',
     "the GeoJSON must be a FeatureCollection; the file is a Feature"),
    ('{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}',
     "the GeoJSON must be a FeatureCollection; the file is a Polygon"),
    ('[{"type": "Feature"}]', "the GeoJSON must be a FeatureCollection object; the file is a JSON array"),
    ('{"features": []}', "the GeoJSON must be a FeatureCollection; the file is an object without a \"type\""),
    ('{"type": "FeatureCollection", "features": []}',
     "the FeatureCollection has no features (no \"features\" array, or an empty one)"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}', None),
    ('{"type": "FeatureCollection", "features": [{"type": "Polygon", "coordinates": []}]}',
     "feature 1 of the FeatureCollection is not a GeoJSON Feature"),
    ("MA_XA,SO_TO\n00004,1\n", "the GeoJSON must be a FeatureCollection object; the file is not a JSON object"),
    ("", "the GeoJSON must be a FeatureCollection object; the file is not a JSON object"),
])
def test_a_geojson_that_is_not_a_feature_collection_is_rejected(warehouse, db, inbox, text, reason):
    r = ingest_file(write(inbox, "TDDAT_01_20261120_001.geojson", text))
    assert (r["status"], r["rows_read"], r["rows_loaded"]) == ("rejected", 0, 0)
    if reason is None:
        assert r["reason"].startswith("the GeoJSON is not valid JSON after feature 0: "), r["reason"]
    else:
        assert r["reason"] == reason
    assert db.execute("select count(*) from store.land_parcel").fetchone() == (0,)


def test_a_csv_without_hinh_the_or_with_a_computed_column_is_rejected(warehouse, db, inbox):
    r = tddat(inbox, "TDDAT_01_20261120_001.csv", [parcel()[:6]], header=TDDAT_HEADER[:6])
    assert r["reason"] == ("required column(s) missing from the header: HINH_THE (the header has: MA_XA, SO_TO, "
                           "SO_THUA, DIEN_TICH, MUC_DICH, DIA_CHI)")
    r = tddat(inbox, "TDDAT_01_20261120_002.csv", [parcel() + [""]], header=TDDAT_HEADER + ["GEOM_ERROR"])
    assert r["reason"] == "the header names column GEOM_ERROR, which the pipeline computes itself: leave it out"
    r = tddat(inbox, "TDDAT_01_20261120_003.csv", [parcel(), parcel(no="2")[:5]])
    assert r["reason"] == "a row has fewer fields than the header (near data row 2)"
    r = ingest_file(write(inbox, "TDDAT_01_20261120_004.xlsx", "x"))
    assert r["reason"] == "a TDDAT delivery must be one of geojson, csv, not .xlsx"


def test_no_postgis_means_no_geometry_view(warehouse, db):
    has_postgis = db.execute("select exists (select 1 from pg_extension where extname = 'postgis')").fetchone()[0]
    view = db.execute("select to_regclass('core.land_parcel_geometry') is not null").fetchone()[0]
    assert view == has_postgis
    assert db.execute("select name from meta.schema_migration where name = '013_land.sql'").fetchone()


# ------------------------------------------------------------------------------------------ rights

P1, P2 = "001090000001", "001190000002"
ENT_A, ENT_B = "0100109106", "0100109113"


def right(serial="CS 000001", parcel_no="1", kind="CN", pid="", ent="", name="Nguyễn Văn An", share="",
          status="Hiệu lực", issued="15/06/2015", ward="00004", sheet="12", entry="") -> list[str]:
    return [serial, entry, issued, ward, sheet, parcel_no, kind, pid, ent, name, share, status]


def gcn(inbox: Path, name: str, rows: list[list[str]]) -> dict:
    return deliver(inbox, name, GCN_HEADER, rows)


@pytest.fixture
def land_register(warehouse, db, inbox):
    """Parcels 00004-12-1..4, person P1 and enterprise A in the core."""
    tddat(inbox, "TDDAT_01_20261101_001.csv", [parcel(no=str(i), geom=square(i)) for i in range(1, 5)])
    deliver(inbox, "CUTRU_01_20261101_001.csv", CUTRU_HEADER, [person(pid=P1)])
    deliver(inbox, "DKKD_01_20261101_001.csv", DKKD_HEADER,
            [[ENT_A, "Công ty cổ phần Sữa Hà Nội", "Công ty cổ phần", "12/03/2010", "Đang hoạt động", "01", "00004"]])


def test_certificates_with_co_holders_enterprises_and_findings(land_register, db, inbox):
    rows = [
        right("CS 000001", "1", pid=P1, name="NGUYỄN VĂN AN", share="50", entry="VS-01"),   # co-holders 50 + 50,
        right("CS 000001", "1", pid=P2, name="Trần Thị Bình", share="50,0"),                # the second unresolved
        right("CS 000002", "2", kind="TC", ent=ENT_A, name="Công ty cổ phần Sữa Hà Nội", share="100"),
        right("CS 000003", "3", kind="tc", ent=ENT_B, name="Doanh nghiệp tư nhân Kim Thành"),  # unresolved
        right("CS 000004", "4", pid=P1, share="60", status="Đã chuyển nhượng"),             # 60 + 30: share_mismatch
        right("CS 000004", "4", kind="TC", ent=ENT_A, name="Công ty cổ phần Sữa Hà Nội", share="30",
              status="Đã chuyển nhượng"),
        right("CS 000005", "99", pid=P1),                                                    # unknown_parcel
        right("CS 000006", "1", pid=P1, status="da thu hoi"),                                # no share: fine
        right("CS123456", "1", pid=P1),                                                      # invalid_serial
        right("CS 000007", "1", pid=""),                                                     # missing_required
        right("CS 000008", "1", kind="TC", pid=P1),                                          # missing_required
        right("CS 000009", "1", kind="HGD", pid=P1),                                         # invalid_code
        right("CS 000010", "1", pid=P1, share="0"),                                          # invalid_number
        right("CS 000011", "1", pid="12345"),                                                # invalid_personal_id
        right("CS 000012", "1", kind="TC", ent="0100109107"),                                # invalid_tax_code
    ]
    r = gcn(inbox, "GCN_01_20261120_001.csv", rows)
    assert r == receipt(r, status="loaded_with_rejections", read=15, quarantined=8,
                        rejections={"missing_required": 2, "invalid_serial": 1, "invalid_code": 1,
                                    "invalid_personal_id": 1, "invalid_tax_code": 1, "invalid_number": 1,
                                    "unknown_parcel": 1},
                        findings={"unresolved_person": 1, "unresolved_enterprise": 1, "share_mismatch": 2},
                        changes={"new": 7, "changed": 0, "unchanged": 0, "removed": 0})
    assert quarantined(db)[-8:] == [
        (7, ["unknown_parcel"], "unknown_parcel: MA_XA=00004 SO_TO=12 SO_THUA=99"),
        (9, ["invalid_serial"], "invalid_serial: SO_PHAT_HANH=CS123456"),
        (10, ["missing_required"], "missing_required: SO_DINH_DANH_CHU"),
        (11, ["missing_required"], "missing_required: MA_SO_DN_CHU"),
        (12, ["invalid_code"], "invalid_code: LOAI_CHU=HGD"),
        (13, ["invalid_number"], "invalid_number: TY_LE=0"),
        (14, ["invalid_personal_id"], "invalid_personal_id: SO_DINH_DANH_CHU=12345"),
        (15, ["invalid_tax_code"], "invalid_tax_code: MA_SO_DN_CHU=0100109107"),
    ]
    issued = dt.date(2015, 6, 15)
    assert rights(db) == [
        ("CS 000001", "00004-12-1", issued, "person", P1, None, "Nguyễn Văn An", Decimal("50"), "valid"),
        ("CS 000001", "00004-12-1", issued, "person", P2, None, "Trần Thị Bình", Decimal("50.0"), "valid"),
        ("CS 000002", "00004-12-2", issued, "organisation", None, ENT_A, "Công ty cổ phần Sữa Hà Nội",
         Decimal("100"), "valid"),
        ("CS 000003", "00004-12-3", issued, "organisation", None, ENT_B, "Doanh nghiệp tư nhân Kim Thành", None,
         "valid"),
        ("CS 000004", "00004-12-4", issued, "person", P1, None, "Nguyễn Văn An", Decimal("60"), "transferred"),
        ("CS 000004", "00004-12-4", issued, "organisation", None, ENT_A, "Công ty cổ phần Sữa Hà Nội",
         Decimal("30"), "transferred"),
        ("CS 000006", "00004-12-1", issued, "person", P1, None, "Nguyễn Văn An", None, "revoked"),
    ]


def test_an_unresolved_holder_resolves_by_himself_when_the_person_arrives(land_register, db, inbox):
    rows = [right("CS 000001", "1", pid=P1, share="50"), right("CS 000001", "1", pid=P2, name="Trần Thị Bình",
                                                                   share="50")]
    r = gcn(inbox, "GCN_01_20261120_001.csv", rows)
    assert r["findings"] == {"unresolved_person": 1}
    holders = ("select r.holder_person_id, p.full_name, p.birth_date from core.land_right r "
               "left join core.person p on p.person_id = r.holder_person_id order by 1")
    assert db.execute(holders).fetchall() == [(P1, "Nguyễn Văn An", dt.date(1990, 3, 12)), (P2, None, None)]
    versions = db.execute("select count(*) from store.land_right").fetchone()
    # the residence register lists her a day later: the link resolves, GCN is not reloaded
    deliver(inbox, "CUTRU_01_20261121_001.csv", CUTRU_HEADER,
            [person(pid=P1), person(pid=P2, name="Trần Thị Bình", born="05/05/1990", sex="Nữ")])
    assert db.execute(holders).fetchall() == [(P1, "Nguyễn Văn An", dt.date(1990, 3, 12)),
                                              (P2, "Trần Thị Bình", dt.date(1990, 5, 5))]
    assert db.execute("select count(*) from store.land_right").fetchone() == versions
    # next week's snapshot: nothing to report, nothing changed
    week2 = gcn(inbox, "GCN_01_20261127_001.csv", list(reversed(rows)))
    assert (week2["changes"], week2["findings"]) == ({"new": 0, "changed": 0, "unchanged": 2, "removed": 0}, {})


def test_a_gcn_snapshot_ends_a_certificate_and_keeps_its_history(land_register, db, inbox):
    gcn(inbox, "GCN_01_20261120_001.csv", [right("CS 000001", "1", pid=P1), right("CS 000002", "2", pid=P1)])
    r = gcn(inbox, "GCN_01_20261127_001.csv", [right("CS 000001", "1", pid=P1, status="Đã thu hồi")])
    assert r["changes"] == {"new": 0, "changed": 1, "unchanged": 0, "removed": 1}
    assert db.execute("select certificate_serial, status, valid_from, valid_to from history.land_right "
                      "where recorded_to is null order by 1, 3").fetchall() == [
        ("CS 000001", "valid", dt.datetime(2026, 11, 19, 17, tzinfo=UTC), dt.datetime(2026, 11, 26, 17, tzinfo=UTC)),
        ("CS 000001", "revoked", dt.datetime(2026, 11, 26, 17, tzinfo=UTC), None),
        ("CS 000002", "valid", dt.datetime(2026, 11, 19, 17, tzinfo=UTC), dt.datetime(2026, 11, 26, 17, tzinfo=UTC)),
    ]


def test_a_quarantined_holder_row_is_not_removed_by_the_snapshot(land_register, db, inbox):
    gcn(inbox, "GCN_01_20261120_001.csv", [right("CS 000001", "1", pid=P1), right("CS 000002", "2", pid=P1)])
    r = gcn(inbox, "GCN_01_20261127_001.csv", [right("CS 000001", "1", pid=P1),
                                               right("CS 000002", "2", pid=P1, issued="31/02/2015")])
    assert (r["rows_quarantined"], r["changes"]) == (1, {"new": 0, "changed": 0, "unchanged": 1, "removed": 0})
    assert [x[0] for x in rights(db)] == ["CS 000001", "CS 000002"]


def test_parcels_and_holders_are_indexed_queries(land_register, db, inbox):
    gcn(inbox, "GCN_01_20261120_001.csv", [right(f"CS {i:06d}", str(i % 4 + 1), pid=P1) for i in range(1, 40)]
        + [right("CS 000100", "2", kind="TC", ent=ENT_A)])
    db.execute("analyze store.land_right")
    db.execute("set enable_seqscan = off")  # tables this small would be scanned; the plan must allow the index
    for query, index, arg in [
        ("select * from core.land_right where holder_person_id = %s", "land_right_person_current", P1),
        ("select * from core.land_right where holder_enterprise_code = %s", "land_right_enterprise_current", ENT_A),
        ("select * from core.land_right where parcel_id = %s", "land_right_parcel_current", "00004-12-2"),
    ]:
        plan = json.dumps(db.execute("explain (format json) " + query, (arg,)).fetchone()[0])
        assert index in plan and "Seq Scan" not in plan, (query, plan)
    assert db.execute("select count(distinct p.parcel_id) from core.land_parcel p join core.land_right r "
                      "on r.parcel_id = p.parcel_id where r.holder_person_id = %s", (P1,)).fetchone() == (4,)
    assert db.execute("select holder_enterprise_code from core.land_right where parcel_id = '00004-12-2' "
                      "and holder_type = 'organisation'").fetchall() == [(ENT_A,)]


# ------------------------------------------------------------------------------------------ generated

@pytest.mark.parametrize("file_type", ["csv", "geojson"])
def test_generated_tddat_receipt_matches_its_manifest(warehouse, db, inbox, file_type):
    from pipelines.generate import generate

    m = generate("TDDAT", 3000, "01", 0.03, inbox, date=dt.date(2026, 11, 20), seed=7, file_type=file_type)
    r = ingest_file(m["path"])
    assert (r["status"], r["rows_read"], r["rows_quarantined"]) == ("loaded_with_rejections", 3000, m["defect_rows"])
    assert r["rejections"] == m["rejections"] and set(m["rejections"]) == {
        "missing_required", "unknown_admin_unit", "invalid_parcel_ref", "invalid_number", "invalid_code",
        "invalid_geometry", "duplicate_key"}
    assert r["findings"] == m["findings"] and m["findings"]["parcel_overlap"] > 0 and m["findings"]["area_mismatch"] > 0
    assert db.execute("select count(*) from core.land_parcel").fetchone() == (3000 - m["defect_rows"],)


def test_generated_gcn_receipt_matches_its_manifest(warehouse, db, inbox):
    from pipelines.generate import generate

    people = generate("CUTRU", 300, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=1)
    ingest_file(people["path"])
    person_ids = [row[0] for row in db.execute("select person_id from core.person order by 1")]
    ingest_file(generate("TDDAT", 2500, "01", 0.0, inbox, date=dt.date(2026, 11, 13), seed=2)["path"])
    m = generate("GCN", 2000, "01", 0.04, inbox, date=dt.date(2026, 11, 20), seed=3, person_ids=person_ids)
    r = ingest_file(m["path"])
    assert (r["rows_read"], r["rows_quarantined"], r["rejections"]) == (2000, m["defect_rows"], m["rejections"])
    assert set(m["rejections"]) == {"missing_required", "invalid_serial", "invalid_date", "invalid_code",
                                    "invalid_personal_id", "invalid_tax_code", "invalid_number", "unknown_parcel",
                                    "duplicate_key"}
    assert r["findings"] == m["findings"] and all(m["findings"].values())
    co_held = db.execute("select count(*) from (select certificate_serial from core.land_right group by 1 "
                         "having count(*) > 1) c").fetchone()[0]
    assert co_held > 100


# ------------------------------------------------------------------------------------------ serving

def test_history_as_of_for_parcels_and_rights(land_register, db, inbox):
    week1 = dt.datetime(2026, 11, 21, tzinfo=UTC)
    gcn(inbox, "GCN_01_20261120_001.csv", [right("CS 000001", "1", pid=P1), right("CS 000002", "2", pid=P1)])
    tddat(inbox, "TDDAT_01_20261127_001.csv", [parcel(no="1", area="120,0"), parcel(no="2", geom=square(2))])
    gcn(inbox, "GCN_01_20261127_001.csv", [right("CS 000001", "1", pid=P1, status="Đã chuyển nhượng")])
    week2 = dt.datetime(2026, 11, 28, tzinfo=UTC)
    assert db.execute("select parcel_id, area_m2 from history.land_parcel_as_of(%s) order by 1", (week1,)).fetchall() == [
        (f"00004-12-{i}", Decimal(comma(geod_area(square(i))).replace(",", "."))) for i in range(1, 5)]
    assert db.execute("select parcel_id, area_m2 from history.land_parcel_as_of(%s) order by 1", (week2,)).fetchall() == [
        ("00004-12-1", Decimal("120.0")), ("00004-12-2", Decimal(comma(geod_area(square(2))).replace(",", ".")))]
    assert db.execute("select certificate_serial, status from history.land_right_as_of(%s) order by 1",
                      (week1,)).fetchall() == [("CS 000001", "valid"), ("CS 000002", "valid")]
    assert db.execute("select certificate_serial, status, holder_person_id from history.land_right_as_of(%s) "
                      "order by 1", (week2,)).fetchall() == [("CS 000001", "transferred", P1)]
    # what we knew before the second week's deliveries, asked about today
    first_known = db.execute("select min(recorded_from) from store.land_right where delivery_id = "
                             "(select min(delivery_id) from meta.delivery where feed = 'GCN')").fetchone()[0]
    assert db.execute("select certificate_serial, status from history.land_right_as_of(%s, %s) order by 1",
                      (week2, first_known)).fetchall() == [("CS 000001", "valid"), ("CS 000002", "valid")]


def test_a_resubmission_of_corrected_parcels_resolves_the_quarantined_one(warehouse, db, inbox):
    """The R-sequence convention works for a three-column key: the corrected parcel loads, nothing
    else is removed, and the quarantined row of the same parcel is resolved by it."""
    bow_tie = f"POLYGON (({X0} {Y0}, {X0 + D} {Y0 + D}, {X0 + D} {Y0}, {X0} {Y0 + D}, {X0} {Y0}))"
    first = tddat(inbox, "TDDAT_01_20261120_001.csv", [parcel(no="1"), parcel(no="2", shape=bow_tie, area="60")])
    assert (first["rows_loaded"], first["rejections"]) == (1, {"invalid_geometry": 1})
    fix = tddat(inbox, "TDDAT_01_20261121_R01.csv", [parcel(no="2", geom=square(3))])
    assert (fix["status"], fix["rows_loaded"], fix["partial"], fix["resolved"]) == ("loaded", 1, True, 1)
    assert fix["changes"] == {"new": 1, "changed": 0, "unchanged": 0, "removed": 0}
    assert [p[0] for p in parcels(db)] == ["00004-12-1", "00004-12-2"]
    assert db.execute("select q.record_key, d.file_name from quarantine.row q "
                      "join meta.delivery d on d.delivery_id = q.resolved_by").fetchall() == [
        ("00004|12|2", "TDDAT_01_20261121_R01.csv")]
