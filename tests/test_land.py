"""TDDAT (land parcels) and GCN (certificates and holders) end to end against a real warehouse:
geometry checks (bow tie, overlap, area), GeoJSON and WKT variants, survey-time commune codes,
co-holders and shares, holders resolved at read time, snapshots and history."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

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
