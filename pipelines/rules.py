"""Column types of the contracts and the SQL that checks and conforms each.

Every type names the reason code a bad value gets and two SQL templates over the cleaned text
value `{v}` (trimmed; empty and the string NULL turned into SQL NULL): `invalid`, true when a
present value breaks the type, and `value`, the conformed value. The SQL functions they call live
in sql/002_rules.sql, so the work stays inside PostgreSQL. Types that need a lookup table
(`ward_code`, `province_code`) name it in `lookup`; the checked pass joins it once per column.
"""
from __future__ import annotations

from dataclasses import dataclass

# Vietnamese letters with diacritics and their bare forms, for matching code-list values such as
# `Nữ`, `NU`, `nu` alike. rules.fold() in SQL uses exactly these two strings.
ACCENTED = "àáạảãâầấậẩẫăằắặẳẵèéẹẻẽêềếệểễìíịỉĩòóọỏõôồốộổỗơờớợởỡùúụủũưừứựửữỳýỵỷỹđ"
BARE = "aaaaaaaaaaaaaaaaaeeeeeeeeeeeiiiiiooooooooooooooooouuuuuuuuuuuyyyyyd"


def fold(text: str) -> str:
    """Python twin of rules.fold(): lower case, no diacritics, no spaces."""
    import unicodedata

    lowered = unicodedata.normalize("NFC", text).lower()
    return lowered.translate(str.maketrans(ACCENTED, BARE)).replace(" ", "")


@dataclass(frozen=True)
class TypeRule:
    code: str | None          # reason code for a present but bad value; None: any text is fine
    invalid: str | None       # SQL predicate over {v}
    value: str                # SQL conformed value over {v}
    sql_type: str             # type of the conformed value
    doc: str
    lookup: str | None = None  # ref table joined as {j} (by code = lookup_key)
    lookup_key: str = "{v}"
    lookup_extra: str = ""      # more of the join condition, over {j} and the record date {d}
    extras: tuple[tuple[str, str, str], ...] = ()  # (suffix, SQL over {v}, sql type): extra outputs
    # few distinct values (dates, codes): conform each distinct value once, then join it back,
    # instead of parsing the same text a million times
    dictionary: bool = False


TYPES: dict[str, TypeRule] = {
    "text": TypeRule(None, None, "{v}", "text", "free text, kept as sent (NFC, trimmed)"),
    "name": TypeRule(None, None, "rules.conform_name({v})", "text",
                     "a name: NFC, spaces collapsed, ALL CAPS turned to title case"),
    "personal_id": TypeRule(
        "invalid_personal_id", "not (rules.is_personal_id({v}) and {j}.code is not null)", "{v}", "text",
        "12 digits: 0 + pre-2025 province code, century/sex digit 0-5, two year digits, six more",
        lookup="ref.legacy_province", lookup_key="substr({v}, 2, 2)"),
    "date": TypeRule("invalid_date", "rules.parse_date({v}) is null", "rules.parse_date({v})", "date",
                     "a calendar date dd/mm/yyyy", dictionary=True),
    # a timestamp is conformed as two dictionaries, its date part and its time-of-day part
    "timestamp": TypeRule("invalid_date", "rules.parse_timestamp({v}) is null", "rules.parse_timestamp({v})",
                          "timestamptz", "a timestamp dd/mm/yyyy HH:MM:SS, local time UTC+7", dictionary=True),
    "partial_date": TypeRule(
        "invalid_date", "rules.parse_partial_date({v}) is null", "rules.parse_partial_date({v})", "date",
        "dd/mm/yyyy, 00/mm/yyyy, 00/00/yyyy or yyyy; stored as the first day of the known period "
        "with its precision (day, month, year)",
        extras=(("_precision", "rules.partial_date_precision({v})", "text"),), dictionary=True),
    "code": TypeRule("invalid_code", "{conform} is null", "{conform}", "text",
                     "one of the contract's code list, matched ignoring case, diacritics and spaces",
                     dictionary=True),
    "country": TypeRule("invalid_code", "upper({v}) !~ '^[A-Z]{{2}}$'", "upper({v})", "text",
                        "ISO 3166-1 alpha-2 country code", dictionary=True),
    "province_code": TypeRule(
        "unknown_admin_unit", "{j}.code is null", "{j}.current_code", "text",
        "a GSO province code, pre- or post-2025, conformed to the current province",
        lookup="ref.province_lookup"),
    "ward_code": TypeRule(
        "unknown_admin_unit", "{j}.current_code is null", "{j}.current_code", "text",
        "a GSO ward/commune code, pre- or post-2025, conformed to the unit valid on the record's date "
        "and then to its current successor (rules.resolve_ward, through ref.ward_resolution)",
        lookup="ref.ward_resolution",
        # a record whose date is unreadable is rejected for that; read its code as a current one
        lookup_extra="{j}.after_reform = coalesce({d} >= date '2025-07-01', true)"),
}

# The enterprise register (DKKD); their SQL functions are in sql/010_enterprise_rules.sql.
TYPES.update({
    "tax_code": TypeRule(
        "invalid_tax_code", "not rules.is_tax_code({v})", "{v}", "text",
        "an enterprise code (tax code) as the register writes it: 10 digits, the tenth being the check "
        "digit of the first nine (Circular 105/2020/TT-BTC: 10 - (S mod 11), S = the digits weighted "
        "31, 29, 23, 19, 17, 13, 7, 5, 3; digits 3-9 not all 0), or a dependent unit's NNNNNNNNNN-NNN: "
        "its parent's valid ten-digit code, a hyphen, a suffix 001-999; no dots or spaces"),
    "money": TypeRule(
        "invalid_number", "rules.parse_money({v}) is null", "rules.parse_money({v})", "bigint",
        "a whole amount in VND: digits, optionally grouped by dot thousands separators "
        "(1.000.000.000), optionally with a zero decimal part after a decimal comma (,00)",
        dictionary=True),   # amounts repeat (round sums): each distinct text is parsed once
    "vsic": TypeRule(
        "invalid_code", "not rules.is_vsic({v})", "{v}", "text",
        "a VSIC 2018 economic activity code: 4 or 5 digits, the first two one of its divisions",
        dictionary=True),
    "org_name": TypeRule(None, None, "rules.collapse_spaces({v})", "text",
                         "a registered name: NFC, spaces collapsed, case kept as registered"),
})


# Every well-formed spelling of a low-cardinality type (SQL of one text column), for its static
# dictionary (pipelines/spellings.py): each is conformed once per warehouse by the type's own
# rule, and a delivery then needs no scan of its rows for their distinct values. A spelling not
# listed here is still conformed, in the row. A timestamp is three parts (checks._dictionary_parts).
def _days(first: str) -> str:
    """The days from `first` to the end of 2035, as dates (not timestamps: no time zone)."""
    return f"(select date '{first}' + i as d from generate_series(0, date '2035-12-31' - date '{first}') i) days"


_YEARS = "generate_series(1900, 2035)"
SPELLINGS = {
    "date": f"select to_char(d, 'DD/MM/YYYY') from {_days('1900-01-01')}",
    "partial_date": (
        f"select to_char(d, 'DD/MM/YYYY') from {_days('1900-01-01')}"
        f" union all select to_char(d, '\"00/\"MM/YYYY') from {_days('1900-01-01')} where extract(day from d) = 1"
        f" union all select '00/00/' || y from {_YEARS} y union all select y::text from {_YEARS} y"),
    # a record's timestamp: this century's dates, ' HH:MM' and ':SS'. Small hash tables probe
    # faster: against 1900's dates and the 86,400 times of a day, 0.3 CPU-s less per 500,000 rows
    "recent_date": f"select to_char(d, 'DD/MM/YYYY') from {_days('2000-01-01')}",
    "hour_minute": ("select to_char(timestamp '2000-01-01' + m * interval '1 minute', ' HH24:MI')"
                    " from generate_series(0, 1439) m"),
    "second": "select ':' || lpad(s::text, 2, '0') from generate_series(0, 59) s",
    "country": ("select pad || chr(a + lower) || chr(b + lower) || rpad"
                " from generate_series(65, 90) a, generate_series(65, 90) b, (values (0), (32)) l(lower),"
                " (values ('', ''), (' ', ''), ('', ' ')) p(pad, rpad)"),
}


def code_spellings(code_list: dict) -> list[str]:
    """The spellings offices use for a code list's entries: as listed, in capitals, in lower case,
    capitalised, without diacritics, and each with a space before it, after it or both."""
    import unicodedata

    def bare(text: str) -> str:
        parts = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
        return unicodedata.normalize("NFC", "".join(ch for ch in parts if not unicodedata.combining(ch)))

    cased = {form for k in code_list for form in (k, k.upper(), k.lower(), k.capitalize(), k.title())}
    spelt = cased | {bare(form) for form in cased}
    return sorted({text for form in spelt for text in (form, " " + form, form + " ", f" {form} ")})


def code_list_sql(v: str, code_list: dict) -> str:
    """A CASE mapping the folded text to the code list's conformed values (NULL when unknown)."""
    whens = " ".join(f"when {sql_literal(fold(k))} then {sql_literal(val)}" for k, val in code_list.items())
    return f"(case rules.fold({v}) {whens} end)"


def sql_literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"

# The land register (TDDAT parcels, GCN certificates); their SQL functions are in sql/012_land_rules.sql.
# The GEOM_* columns are not on the wire: pipelines.land computes them from HINH_THE (Shapely, pyproj)
# while the file streams to COPY, so the geometry rules are contract rules like any other.
TYPES.update({
    "survey_ward_code": TypeRule(
        "unknown_admin_unit", "{j}.current_code is null", "{v}", "text",
        "a GSO ward/commune code as at the cadastral survey, kept as sent (it names the parcel); a code of "
        "both eras is read as the pre-2025 unit (surveys predate the reform), and the current ward it lies in "
        "is ward_code",
        lookup="ref.ward_resolution", lookup_extra="{j}.after_reform = false",
        extras=(("_current", "{j}.current_code", "text"),)),
    "sheet_no": TypeRule("invalid_parcel_ref", "not (length({v}) <= 4 and rules.is_digits({v}))", "{v}", "text",
                         "a cadastral map sheet number: 1-4 digits, kept as sent"),
    "parcel_no": TypeRule("invalid_parcel_ref", "not (length({v}) <= 5 and rules.is_digits({v}))", "{v}", "text",
                          "a parcel number on its sheet: 1-5 digits, kept as sent"),
    "area": TypeRule(
        "invalid_number", "coalesce(rules.parse_decimal({v}) <= 0, true)", "rules.parse_decimal({v})", "numeric",
        "a positive decimal number with a decimal comma (125,5) and optional dot thousands separators "
        "(1.250,5); a dot is never a decimal point", dictionary=True),
    "share": TypeRule(
        "invalid_number", "coalesce(rules.parse_decimal({v}) not between 0.0001 and 100, true)",
        "rules.parse_decimal({v})", "numeric",
        "a percentage above 0 and at most 100, decimal comma allowed (33,33)", dictionary=True),
    "land_use": TypeRule(
        "invalid_code", "rules.land_use_codes({v}) is null", "rules.land_use_codes({v})", "text[]",
        "land-use purpose codes of Circular 25/2014/TT-BTNMT (and the 2024 additions HNK, CNT, RSN), several "
        "joined with + (ONT+CLN); matched ignoring case and spaces, each at most once; stored as an array",
        dictionary=True),
    "certificate_serial": TypeRule(
        "invalid_serial", "not rules.is_certificate_serial({v})", "{v}", "text",
        "a certificate serial: two capital letters, a space, six digits (CS 123456)"),
    "geometry_error": TypeRule(
        "invalid_geometry", "true", "{v}", "text",
        "why HINH_THE is not a usable polygon (computed by pipelines.land: unreadable WKT/GeoJSON, not a "
        "Polygon/MultiPolygon, empty, not WGS84 longitude/latitude, or Shapely's is_valid_reason, e.g. "
        "Self-intersection[x y]); any value rejects the row"),
    "geojson": TypeRule(None, None, "{v}", "text",
                        "the geometry as GeoJSON text in WGS84 (Shapely's writer: reads back to the same coordinates)"),
    "measure": TypeRule(None, None, "{v}::numeric", "numeric", "a number computed by the pipeline"),
    # text until it is stored (as a PostgreSQL box): GX cannot reflect a box column of the checked table
    "bbox": TypeRule(None, None, "{v}", "text", "a bounding box computed by the pipeline, as PostgreSQL box text"),
})
