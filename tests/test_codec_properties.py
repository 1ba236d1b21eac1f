"""Property: records → file → records is lossless on every writable field (CSV, Parquet, XLSX)."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl import fields
from etl.codec import clients_to_frame, date_to_ms, frame_to_records, read_table, to_api_value, write_table
from etl.codec.text import decode_tags, encode_tags

# Any unicode except NUL (a CSV with NUL bytes is refused as binary) and surrogates.
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
TRICKY = st.sampled_from(["", " ", "0", "007", "02134", "=1+1", "+1 555", "-x", "@me", "\ttab",
                          "\rcr", "'", "'=x", "a,b", 'say "hi"', "line\nbreak", "crlf\r\nx",
                          "semi;colon", "back\\slash", "Zoë", "日本", "😀", "1.0", "TRUE", "NaN",
                          "null", "_x000D_", " trailing "])
TEXT = st.one_of(TRICKY, st.text(CHARS, max_size=30))
TAG = st.one_of(TRICKY, st.text(CHARS, min_size=1, max_size=12)).filter(lambda t: t != "")
TIMEZONES = ["UTC", "Europe/Paris", "America/Los_Angeles", "Asia/Tokyo"]

TEXT_FIELDS = [f.name for f in fields.FIELDS if f.writable and f.kind == "text"]


@st.composite
def client_records(draw, tz):
    n = draw(st.integers(min_value=1, max_value=4))
    custom_ids = ["sotc", "EmergencyContactName"]
    records = []
    for i in range(n):
        rec = {"ClientId": draw(st.one_of(st.none(), st.just(i + 1)))}
        for name in draw(st.lists(st.sampled_from(TEXT_FIELDS), max_size=6, unique=True)):
            rec[name] = draw(st.one_of(st.none(), TEXT))
        for name in fields.DATE_FIELDS:
            day = draw(st.one_of(st.none(), st.dates(date(1900, 1, 1), date(2100, 12, 31))))
            rec[name] = None if day is None else float(date_to_ms(day, tz))
        rec["Archived"] = draw(st.one_of(st.none(), st.booleans()))
        rec["BillingType"] = draw(st.one_of(st.none(), st.sampled_from([0, 1, 2])))
        rec["Tags"] = draw(st.lists(TAG, max_size=4))
        rec["DateCreated"] = float(draw(st.integers(946684800000, 4102444800000)))
        rec["CustomFields"] = [{"FieldId": fid, "Text": fid, "Value": draw(st.one_of(st.none(), TEXT))}
                               for fid in custom_ids]
        records.append(rec)
    return records


def canonical(record: dict) -> dict:
    """A record as the codec promises to keep it: writable fields, tags; "" and None alike."""
    out = {}
    for key, value in record.items():
        if key == "CustomFields":
            for cf in value:
                out[fields.custom_column(cf["FieldId"])] = cf["Value"] if cf["Value"] != "" else None
        elif fields.is_writable(key) or key in ("Tags", "ClientId", "DateCreated"):
            out[key] = None if value == "" else value
    return out


def check_round_trip(records, tz, path):
    frame = clients_to_frame(records, tz=tz)
    write_table(frame, path)
    table = read_table(path, tz=tz)
    assert table.problems == []
    back = frame_to_records(table.frame, tz=tz)
    assert len(back) == len(records)
    for original, got in zip(records, back):
        want = canonical(original)
        have = canonical(got)
        for key, value in want.items():
            assert have.get(key) == value, key


@pytest.mark.parametrize("ext,examples", [("csv", 50), ("parquet", 50), ("xlsx", 15)])
def test_records_file_records_lossless(tmp_path_factory, ext, examples):
    @settings(max_examples=examples, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=st.data(), tz=st.sampled_from(TIMEZONES))
    def run(data, tz):
        records = data.draw(client_records(tz))
        path = tmp_path_factory.mktemp("prop") / f"clients.{ext}"
        check_round_trip(records, tz, path)

    run()


@settings(max_examples=200, deadline=None)
@given(st.lists(TAG, max_size=6))
def test_tags_cell_round_trip(tags):
    assert decode_tags(encode_tags(tags)) == tags


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from("ab ;\\\t\x1c\xa0\u2003\x01\x00"), max_size=14))
def test_tags_cell_reads_as_token_by_token(cell):
    """decode_tags' quick paths agree with its token-by-token reading on any cell."""
    from etl.codec.text import _decode_tags_by_token

    assert decode_tags(cell) == _decode_tags_by_token(cell)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), TEXT, st.text(st.sampled_from(" ;\\a\t\x1c\xa0\u2003"), max_size=8)),
                max_size=8))
def test_tags_column_reads_as_each_cell_would(cells):
    """The tags column is split in Arrow, except for cells with escapes: the same lists."""
    import pyarrow as pa

    from etl.codec.text import _coerce_tags

    assert _coerce_tags(pa.array(cells, pa.string())).tolist() == [decode_tags(c) if c else [] for c in cells]


@settings(max_examples=100, deadline=None)
@given(ms=st.integers(-2208988800000, 4102444800000), tz=st.sampled_from(TIMEZONES))
def test_dates_are_calendar_days_in_the_practice_timezone(ms, tz):
    """Any instant reads as its local calendar date; sending it back gives local midnight."""
    from zoneinfo import ZoneInfo

    frame = clients_to_frame([{"ClientId": 1, "DateOfBirth": float(ms)}], tz=tz)
    local = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone(ZoneInfo(tz)).date()
    assert frame.loc[0, "DateOfBirth"] == local.isoformat()
    sent = to_api_value("DateOfBirth", frame.loc[0, "DateOfBirth"], tz=tz)
    assert datetime.fromtimestamp(sent / 1000, tz=ZoneInfo(tz)).date() == local
