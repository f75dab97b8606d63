import codecs
import gzip
import json
import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from core.files import xlsx_bytes
from warehouse.expectations import PLAIN_ID_REASON
from warehouse.loading import LoadError, LoadRefusedError, load_file

TODAY = date(2026, 3, 1)
HEADER = (
    "subscriber_id,name,phone,email,birthday,joined_on,tier,home_store_id,timezone,"
    "locale,sms_consent,email_consent,voice_consent"
)
GOOD = [
    "S1,李伟,+8613812345678,li.wei@example.com,1990-02-28,2015-04-10,gold,ST1,Asia/Shanghai,"
    "zh-CN,true,true,false",
    "S2,Mary Smith,+12125550123,,2000-02-29,2020-01-01,silver,ST1,America/New_York,en,TRUE,"
    "false,false",
]


def write(tmp_path: Path, name: str, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def stores(con, settings, tmp_path):
    path = write(
        tmp_path,
        "stores.csv",
        ["ST1,上海1号店,Shanghai,East,Asia/Shanghai,王伟,w@example.com"],
        "store_id,name,city,region,timezone,manager_name,manager_email",
    )
    load_file(con, settings, "stores", path, today=TODAY)
    return con


def count(con, table="subscribers"):
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_good_rows_load_and_upsert_by_id(stores, settings, tmp_path):
    result = load_file(stores, settings, "subscribers", write(tmp_path, "a.csv", GOOD), today=TODAY)
    assert result.success and result.rows_loaded == 2
    row = stores.execute(
        "SELECT birthday, sms_consent, email FROM subscribers WHERE subscriber_id = 'S2'"
    ).fetchone()
    assert row == (date(2000, 2, 29), True, None)
    # The next day's file: S1 changed (a value cleared too), S2 as before, S3 new.
    changed = GOOD[0].replace(",gold,", ",platinum,").replace("li.wei@example.com", "")
    again = [changed, GOOD[1], GOOD[1].replace("S2,", "S3,")]
    result = load_file(
        stores, settings, "subscribers", write(tmp_path, "b.csv", again), today=TODAY
    )
    assert result.rows_loaded == 3 and count(stores) == 3
    rows = stores.execute("SELECT subscriber_id, tier, email FROM subscribers ORDER BY 1")
    assert rows.fetchall() == [
        ("S1", "platinum", None),
        ("S2", "silver", None),
        ("S3", "silver", None),
    ]


BAD = {
    4: (
        "S3,Bad Date,+8613812345679,,1990-02-30,2015-04-10,gold,ST1,Asia/Shanghai,zh-CN,true,"
        "true,false",
        ["birthday '1990-02-30' is not a real date (YYYY-MM-DD)"],
    ),
    5: (
        "S4,Bad,+86123,not-an-email,1990-01-01,2030-01-01,diamond,ST9,Mars/Base,fr,yes,true,false",
        [
            "joined_on '2030-01-01' is in the future",
            "sms_consent 'yes' must be true or false",
            "timezone 'Mars/Base' is not an IANA timezone",
            "phone '******' is not an E.164 phone number (+8613812345678)",  # masked: the
            "email '***' is not a valid email address",  # original stays in quarantine
            "tier 'diamond' is not a tier (standard, silver, gold, platinum)",
            "locale 'fr' is not a locale (zh-CN, en)",
            "home_store_id 'ST9' is not a known store",
        ],
    ),
    6: (
        "S1,Dup,+8613812345670,,,2015-04-10,gold,ST1,Asia/Shanghai,zh-CN,true,true,false",
        ["subscriber_id 'S1' appears more than once (also on line 2)"],
    ),
    7: (
        "S6,,8613812345671,,,2015-04-10,standard,,Asia/Shanghai,en,false,false,false",
        ["name is missing", "phone '86*******5671' is not an E.164 phone number (+8613812345678)"],
    ),
    8: (  # a number as the id: masked in the reason as in the phone column
        "+8613812345672,Id,+8613812345672,,,2015-04-10,gold,ST1,Asia/Shanghai,zh-CN,true,true,"
        "false",
        [f"subscriber_id '+86*******5672' {PLAIN_ID_REASON}"],
    ),
    9: (  # written as people write it: spaces, no country code
        "+1 415 555 0100,Id,+8613812345673,,,2015-04-10,gold,ST1,Asia/Shanghai,zh-CN,true,true,"
        "false",
        [f"subscriber_id '+1******0100' {PLAIN_ID_REASON}"],
    ),
    10: (
        "13812345674,Id,+8613812345674,,,2030-01-01,gold,ST1,Asia/Shanghai,zh-CN,true,true,false",
        ["joined_on '2030-01-01' is in the future"],  # a plain id; the date shown as it is
    ),
    11: (  # a customer number, no phone number: shown as it is
        "20240001,Id,+8613812345675,,,2015-04-10,gold,ST1,Asia/Shanghai,zh-CN,true,true,false",
        ["subscriber_id '20240001' appears more than once (also on line 12)"],
    ),
    12: (
        "20240001,Id,+8613812345676,,,2015-04-10,gold,ST1,Asia/Shanghai,zh-CN,true,true,false",
        ["subscriber_id '20240001' appears more than once (also on line 11)"],
    ),
}


def test_a_file_with_bad_rows_is_refused_whole_with_every_reason(stores, settings, tmp_path):
    path = write(tmp_path, "bad.csv", GOOD + [line for line, _ in BAD.values()])
    with pytest.raises(LoadRefusedError) as refused:
        load_file(stores, settings, "subscribers", path, today=TODAY)
    result = refused.value.result
    assert count(stores) == 0
    assert set(result.bad_rows) == {2, *BAD}  # line 2 is S1, duplicated on line 6
    for line, (_, reasons) in BAD.items():
        assert sorted(result.bad_rows[line]) == sorted(reasons), line
    # reasons in the file's column order, one per field
    assert "line 5: phone '******' is not an E.164" in str(refused.value)
    assert "; joined_on '2030-01-01' is in the future; tier" in str(refused.value)
    report = json.loads(
        stores.execute("SELECT report FROM load_reports WHERE NOT success").fetchone()[0]
    )
    assert report["success"] is False and report["bad_rows"]["7"]
    assert (settings.reports_dir / "validation" / f"{result.load_id}.json").exists()


def test_a_file_bad_on_every_line_shows_its_first_rows_and_reports_them_all(
    stores, settings, tmp_path
):
    """A file refused for a wrong column has a bad row on every line: the error (and so the
    terminal) once held every one of them, a million lines for a million rows. It shows the
    first rows and says how many more; the load's report keeps each with its reasons."""
    rows = [
        f"S{n},Name {n},+86138{n:08d},,1990-02-28,2015-04-10,gold,ST1,Mars/Olympus,en,"
        "true,false,false"
        for n in range(25)
    ]
    path = write(tmp_path, "tiers.csv", rows)
    with pytest.raises(LoadRefusedError) as refused:
        load_file(stores, settings, "subscribers", path, today=TODAY)
    said = str(refused.value).splitlines()
    assert said[0] == "25 bad row(s) in subscribers; nothing loaded:"
    assert said[1].startswith("line 2: timezone 'Mars/Olympus'") and said[20].startswith("line 21:")
    assert said[21:] == ["... and 5 more bad row(s): every one is in the load's report"]
    report = json.loads(
        (settings.reports_dir / "validation" / f"{refused.value.result.load_id}.json").read_text()
    )
    assert sorted(map(int, report["bad_rows"])) == list(range(2, 27))
    assert all("timezone 'Mars/Olympus'" in reasons[0] for reasons in report["bad_rows"].values())


def test_quarantine_loads_the_good_and_keeps_the_bad(stores, settings, tmp_path):
    path = write(tmp_path, "bad.csv", GOOD + [line for line, _ in BAD.values()])
    result = load_file(stores, settings, "subscribers", path, quarantine=True, today=TODAY)
    assert result.rows_loaded == 1 and count(stores) == 1  # S2; both S1 rows are duplicates
    kept = stores.execute(
        "SELECT line, reasons, record->>'subscriber_id' FROM quarantine ORDER BY line"
    ).fetchall()
    assert [k[0] for k in kept] == [2, *BAD]
    assert kept[1][1] == ["birthday '1990-02-30' is not a real date (YYYY-MM-DD)"]
    assert kept[1][2] == "S3"


def test_parquet_and_visits_with_references(stores, settings, tmp_path):
    load_file(stores, settings, "subscribers", write(tmp_path, "a.csv", GOOD), today=TODAY)
    visits = pl.DataFrame(
        {
            "visit_id": ["V1", "V2", "V3", "V4"],
            "subscriber_id": ["S1", "S9", "S2", "S1"],
            "store_id": ["ST1", "ST1", "ST7", "ST1"],
            "visited_at": [
                "2026-02-28T10:15:00+08:00",
                "2026-02-28T10:15:00+08:00",
                "2026-02-28T10:15:00+08:00",
                "2026-02-28 10:15:00",
            ],
            "service_type": ["repair"] * 4,
        }
    )
    visits.write_parquet(tmp_path / "visits.parquet")
    result = load_file(
        stores, settings, "visits", tmp_path / "visits.parquet", quarantine=True, today=TODAY
    )
    assert result.bad_rows == {
        2: ["subscriber_id 'S9' is not a known subscriber"],
        3: ["store_id 'ST7' is not a known store"],
    }
    # V4 has no offset: it is the store's local time (ST1 is in Shanghai), the same moment
    at = stores.execute(
        "SELECT visit_id, epoch(visited_at) FROM store_visits ORDER BY 1"
    ).fetchall()
    assert at == [("V1", 1772244900), ("V4", 1772244900)]  # 2026-02-28 02:15 UTC


def test_unreadable_inputs_are_named(con, settings, tmp_path):
    with pytest.raises(LoadError, match=r"missing column.*voice_consent"):
        load_file(
            con,
            settings,
            "subscribers",
            write(tmp_path, "x.csv", [], HEADER.rsplit(",", 1)[0]),
            today=TODAY,
        )
    with pytest.raises(LoadError, match="unknown kind 'people'"):
        load_file(con, settings, "people", tmp_path / "x.csv")


def _reports(con):
    return {
        row[0]: json.loads(row[1])
        for row in con.execute("SELECT load_id, report FROM load_reports").fetchall()
    }


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (HEADER.encode() + b"\n", "no rows below the header"),
        (b"subscriber_id,name\nS1,Li\n", "missing column(s) joined_on, tier, timezone"),
        # what the header may have meant: a name written otherwise, another delimiter
        (
            HEADER.replace("subscriber_id,name", "Subscriber_ID,Name").encode() + b"\n",
            "missing column(s) subscriber_id, name (the file has 'Subscriber_ID' for "
            "subscriber_id, 'Name' for name: names are lower case, exactly)",
        ),
        (
            HEADER.replace(",", ";").encode() + b"\nS1;Li\n",
            "(its header is one column split by ';': save it comma-separated)",
        ),
        (
            (HEADER + "\n" + GOOD[0] + "\n").encode()
            + GOOD[1].replace("Mary", "玛丽").encode("gb18030"),
            "line 3 is not UTF-8",
        ),
        # another format saved as the export: refused as "line 1 is not UTF-8 (byte 0x8f)"
        (xlsx_bytes({"s": (HEADER.split(","), [GOOD[0].split(",")])}), "is an Excel workbook"),
        ((HEADER + "\n" + GOOD[0] + "\n").encode("utf-16"), "is UTF-16 text"),
        ((HEADER + "\n" + GOOD[0] + "\n").encode("utf-32"), "is UTF-32 text"),
        (gzip.compress((HEADER + "\n" + GOOD[0] + "\n").encode()), "is a gzip-compressed"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "is an Excel 97-2003 workbook"),
    ],
)
def test_every_refused_file_leaves_a_report_row_and_its_json(
    con, settings, tmp_path, content, reason
):
    path = tmp_path / "subscribers.csv"
    path.write_bytes(content)
    with pytest.raises(LoadError, match=re.escape(reason)):
        load_file(con, settings, "subscribers", path, today=TODAY)
    ((load_id, report),) = _reports(con).items()
    assert report["success"] is False and reason in report["refused"]
    on_disk = json.loads((settings.reports_dir / "validation" / f"{load_id}.json").read_text())
    assert on_disk["refused"] == report["refused"] and count(con) == 0


def test_extra_columns_are_ignored_and_reported(stores, settings, tmp_path):
    lines = [line + ",vip,x" for line in GOOD]
    path = write(tmp_path, "extra.csv", lines, HEADER + ",segment,notes")
    result = load_file(stores, settings, "subscribers", path, today=TODAY)
    assert result.rows_loaded == 2 and result.ignored_columns == ["segment", "notes"]
    assert _reports(stores)[result.load_id]["ignored_columns"] == ["segment", "notes"]


def test_great_expectations_checks_the_raw_columns_and_its_result_is_kept(
    stores, settings, tmp_path
):
    path = write(tmp_path, "bad.csv", GOOD + [line for line, _ in BAD.values()])
    result = load_file(stores, settings, "subscribers", path, quarantine=True, today=TODAY)
    report = _reports(stores)[result.load_id]
    gx = report["great_expectations"]
    checked = {
        (r["expectation_config"]["type"], r["expectation_config"]["kwargs"]["column"]): r
        for r in gx["results"]
    }
    # the gate is over the file's own text: patterns, formats and sets, not derived flags
    phone = checked[("expect_column_values_to_match_regex", "phone")]
    assert phone["expectation_config"]["kwargs"]["regex"].startswith(r"^\+[1-9]")
    assert phone["result"]["unexpected_count"] == 2  # lines 5 and 7
    assert [hit["_line"] for hit in phone["result"]["unexpected_index_list"]] == [5, 7]
    birthday = checked[("expect_column_values_to_match_strftime_format", "birthday")]
    assert birthday["result"]["unexpected_count"] == 1 and not birthday["success"]
    assert checked[("expect_column_values_to_be_in_set", "tier")]["result"]["unexpected_count"] == 1
    assert checked[("expect_column_values_to_be_unique", "subscriber_id")]["success"] is False
    assert gx["success"] is False and gx["statistics"]["evaluated_expectations"] == len(
        gx["results"]
    )
    assert "+86123" not in json.dumps(report)  # values never reach the report, lines do


def test_quarantine_says_where_the_bad_rows_went(stores, settings, tmp_path):
    path = write(tmp_path, "bad.csv", GOOD + [line for line, _ in BAD.values()])
    result = load_file(stores, settings, "subscribers", path, quarantine=True, today=TODAY)
    kept = result.quarantine_file
    assert kept is not None and kept.stat().st_mode & 0o777 == 0o600
    assert kept.read_bytes().startswith(codecs.BOM_UTF8)  # opened in a spreadsheet program
    rows = pl.read_csv(kept, infer_schema=False)
    assert rows["line"].to_list() == [str(line) for line in (2, *BAD)]
    assert rows.filter(pl.col("line") == "4")["reasons"].item().startswith("birthday '1990-02-30'")


def test_the_quarantine_file_fixed_and_loaded_back_keeps_its_rows(stores, settings, tmp_path):
    """The bad rows' CSV has a BOM for spreadsheet programs (as one saved from Excel has):
    fixed and loaded back, its first column is still the first column, not a refused one."""
    path = write(tmp_path, "bad.csv", [GOOD[0].replace("gold", "diamond")])
    result = load_file(stores, settings, "subscribers", path, quarantine=True, today=TODAY)
    fixed = tmp_path / "fixed.csv"
    rows = pl.read_csv(result.quarantine_file, infer_schema=False).drop("line", "reasons")
    fixed.write_bytes(codecs.BOM_UTF8 + rows.with_columns(tier=pl.lit("gold")).write_csv().encode())
    load_file(stores, settings, "subscribers", fixed, today=TODAY)
    assert stores.execute("SELECT subscriber_id, tier FROM subscribers").fetchall() == [
        ("S1", "gold")
    ]


def test_typed_parquet_columns_are_read_as_their_text(stores, settings, tmp_path):
    frame = pl.DataFrame(
        {
            "subscriber_id": ["S1"],
            "name": ["Li"],
            "phone": ["+8613812345678"],
            "email": [None],
            "birthday": [date(1990, 2, 28)],
            "joined_on": [date(2015, 4, 10)],
            "tier": ["gold"],
            "home_store_id": ["ST1"],
            "timezone": ["Asia/Shanghai"],
            "locale": ["zh-CN"],
            "sms_consent": [True],
            "email_consent": [False],
            "voice_consent": [False],
        },
        schema_overrides={"email": pl.String},
    )
    frame.write_parquet(tmp_path / "s.parquet")
    result = load_file(stores, settings, "subscribers", tmp_path / "s.parquet", today=TODAY)
    assert result.success
    assert stores.execute(
        "SELECT birthday, sms_consent, email_consent FROM subscribers"
    ).fetchone() == (date(1990, 2, 28), True, False)


def test_a_local_time_the_clocks_skipped_is_refused_and_one_they_repeated_is_taken(
    stores, settings, tmp_path
):
    """02:30 on 2026-03-08 does not exist in New York (02:00 became 03:00): it was stored as
    07:30 UTC, 03:30 local, a time nobody wrote. 01:30 on 2026-11-01 happens twice: taken."""
    stores.execute(
        "INSERT INTO stores (store_id, name, city, region, timezone, manager_name, manager_email)"
        " VALUES ('ST2', 'NY 2', 'New York', 'US East', 'America/New_York', 'Jo', 'jo@x.com')"
    )
    load_file(stores, settings, "subscribers", write(tmp_path, "a.csv", GOOD), today=TODAY)
    header = "visit_id,subscriber_id,store_id,visited_at,service_type"
    lines = ["V1,S1,ST2,2026-03-08 02:30,repair", "V2,S1,ST2,2026-11-01 01:30,repair",
             "V3,S1,ST1,2026-03-08 02:30,repair"]  # fmt: skip
    result = load_file(stores, settings, "visits", write(tmp_path, "v.csv", lines, header),
                       quarantine=True, today=date(2026, 12, 1))  # fmt: skip
    assert result.bad_rows == {
        2: ["visited_at '2026-03-08 02:30' is no time in its store's timezone (the clocks went on)"]
    }
    kept = stores.execute("SELECT visit_id FROM store_visits ORDER BY 1").fetchall()
    assert kept == [("V2",), ("V3",)]  # Shanghai keeps no summer time


def test_a_day_written_as_its_midnight_is_that_day(stores, settings, tmp_path):
    """pandas keeps dates as timestamps, so a Parquet file from it had every row refused as
    "'1990-02-28T00:00:00' is not a real date", as had a spreadsheet's "1990-02-28 00:00:00";
    another time of day is still no date."""
    frame = pl.read_csv(write(tmp_path, "s.csv", GOOD[:1]), infer_schema=False)
    midnight = frame.with_columns(pl.col("birthday", "joined_on").str.to_datetime("%Y-%m-%d"))
    midnight.write_parquet(tmp_path / "s.parquet")
    assert load_file(stores, settings, "subscribers", tmp_path / "s.parquet", today=TODAY).success
    spreadsheet = GOOD[1].replace(
        "2000-02-29,2020-01-01", "2000-02-29 00:00:00,2020-01-01T00:00:00+08:00"
    )  # a zone's midnight is the day written too; no zone is 99:99 away
    odd = GOOD[1].replace("S2,", "S4,").replace("2000-02-29,", "2000-02-29T00:00:00+99:99,")
    noon = GOOD[1].replace("S2,", "S3,").replace("2000-02-29,", "2000-02-29 12:00:00,")
    with pytest.raises(LoadRefusedError) as refused:
        load_file(stores, settings, "subscribers",
                  write(tmp_path, "x.csv", [spreadsheet, noon, odd]), today=TODAY)  # fmt: skip
    assert refused.value.result.bad_rows == {
        3: ["birthday '2000-02-29 12:00:00' is not a real date (YYYY-MM-DD)"],
        4: ["birthday '2000-02-29T00:00:00+99:99' is not a real date (YYYY-MM-DD)"],
    }
    assert stores.execute(
        "SELECT subscriber_id, birthday, joined_on FROM subscribers ORDER BY 1"
    ).fetchall() == [("S1", date(1990, 2, 28), date(2015, 4, 10))]


def _chunked_file(tmp_path: Path) -> tuple[Path, dict[int, str]]:
    """30 rows read 7 at a time: bad rows in the first, third and last chunks, and an id
    repeated across chunks (lines 3 and 30)."""
    rows = [
        f"C{n},Li {n},+86138{n:08d},li{n}@example.com,1990-01-01,2015-04-10,gold,ST1,"
        "Asia/Shanghai,zh-CN,true,true,false"
        for n in range(30)
    ]
    rows[28] = rows[1].replace("Li 1,", "Li again,")  # line 30 repeats line 3's id C1
    rows[4] = rows[4].replace(",gold,", ",diamond,")  # line 6, chunk 1
    rows[16] = rows[16].replace("1990-01-01", "1990-02-30")  # line 18, chunk 3
    rows[27] = rows[27].replace("@example.com", "@@example.com")  # line 29, chunk 4
    bad = {
        3: "subscriber_id 'C1' appears more than once (also on line 30)",
        6: "tier 'diamond' is not a tier",
        18: "birthday '1990-02-30' is not a real date",
        29: "is not a valid email address",
        30: "subscriber_id 'C1' appears more than once (also on line 3)",
    }
    return write(tmp_path, "chunks.csv", rows), bad


def test_a_file_read_in_chunks_names_bad_rows_from_every_chunk_and_loads_nothing(
    stores, settings, tmp_path
):
    path, bad = _chunked_file(tmp_path)
    with pytest.raises(LoadRefusedError) as refused:
        load_file(stores, settings, "subscribers", path, today=TODAY, chunk_rows=7)
    result = refused.value.result
    assert sorted(result.bad_rows) == sorted(bad)
    for line, reason in bad.items():
        assert any(reason in r for r in result.bad_rows[line]), (line, result.bad_rows[line])
    assert count(stores) == 0 and result.rows_read == 30
    gx = _reports(stores)[result.load_id]["great_expectations"]
    assert gx["meta"]["batches"] == 5  # 7 + 7 + 7 + 7 + 2 rows, each validated by GX
    tier = next(
        r
        for r in gx["results"]
        if r["expectation_config"]["kwargs"]["column"] == "tier"
        and r["expectation_config"]["type"] == "expect_column_values_to_be_in_set"
    )
    assert tier["result"]["element_count"] == 30 and tier["result"]["unexpected_count"] == 1


def test_a_file_read_in_chunks_loads_its_good_rows_in_quarantine(stores, settings, tmp_path):
    path, bad = _chunked_file(tmp_path)
    result = load_file(
        stores, settings, "subscribers", path, quarantine=True, today=TODAY, chunk_rows=7
    )
    assert result.rows_loaded == 25 and count(stores) == 25
    kept = stores.execute("SELECT line FROM quarantine ORDER BY line").fetchall()
    assert [k[0] for k in kept] == sorted(bad)
    assert result.quarantine_file is not None
    kept_csv = pl.read_csv(result.quarantine_file, infer_schema=False)
    assert kept_csv["line"].to_list() == [str(line) for line in sorted(bad)]
    # a repeated id's rows, kept, name each other's line, as the output does
    reasons = dict(zip(kept_csv["line"].to_list(), kept_csv["reasons"].to_list(), strict=True))
    assert reasons["3"] == bad[3] and reasons["30"] == bad[30]
    [(kept_reasons,)] = stores.execute("SELECT reasons FROM quarantine WHERE line = 30").fetchall()
    assert kept_reasons == [bad[30]]


def test_an_id_on_many_lines_names_a_few_of_the_others_and_counts_the_rest(
    stores, settings, tmp_path
):
    """An id repeated past the first 20 bad rows shown said only that it was repeated: where
    the other copy was could be anywhere in a million lines."""
    rows = [
        f"R{n if n < 20 else 99},Name {n},+86138{n:08d},,1990-02-28,2015-04-10,gold,ST1,"
        "Asia/Shanghai,en,true,false,false"
        for n in range(28)
    ]  # R99 on lines 22 to 29
    path = write(tmp_path, "repeats.csv", rows)
    with pytest.raises(LoadRefusedError) as refused:
        load_file(stores, settings, "subscribers", path, today=TODAY, chunk_rows=5)
    assert refused.value.result.bad_rows[22] == [
        "subscriber_id 'R99' appears more than once (also on lines 23, 24, 25, 26, 27 and 2 more)"
    ]
    assert refused.value.result.bad_rows[29][0].endswith(
        "(also on lines 22, 23, 24, 25, 26 and 2 more)"
    )
    assert set(refused.value.result.bad_rows) == set(range(22, 30))


QUOTING = 'a field holding a comma or a quote is quoted, its quotes doubled ("Li ""Leo"", Wei")'


def test_a_record_with_more_fields_than_the_header_is_named_by_its_line(stores, settings, tmp_path):
    """An unquoted comma in a field shifts the fields after it: the file was refused with
    Polars' "found more fields than defined in 'Schema'" and its option to truncate, naming
    no line. Each such line is named (the first line of a record whose quoted field holds a
    line break), in either mode, and nothing is loaded."""
    shifted = GOOD[0].replace("李伟", "Li, Wei").replace("S1,", "S3,")
    multiline = GOOD[1].replace("Mary Smith", '"Mary\nSmith"')  # lines 3 and 4
    path = write(tmp_path, "shifted.csv", [GOOD[0], multiline, shifted, shifted + ",x"])
    for quarantine in (False, True):
        with pytest.raises(LoadError) as refused:
            load_file(stores, settings, "subscribers", path, quarantine=quarantine, today=TODAY)
        assert str(refused.value) == (
            f"{path}: line 5 has 14, line 6 has 15 field(s) where the header names 13: "
            f"{QUOTING}; nothing loaded"
        )
    assert count(stores) == 0
    # a long quoted field before it is a field (the csv module's limit is 131,072 characters)
    long = write(
        tmp_path, "long.csv", [GOOD[0].replace("李伟", '"' + "x" * 200_000 + '"'), shifted]
    )
    with pytest.raises(LoadError, match=r"long\.csv: line 3 has 14 field\(s\) where"):
        load_file(stores, settings, "subscribers", long, today=TODAY)
    many = write(tmp_path, "many.csv", [shifted.replace("S3", f"M{n}") for n in range(25)])
    with pytest.raises(LoadError, match=r"line 21 has 14, and 5 more line\(s\) field\(s\) where"):
        load_file(stores, settings, "subscribers", many, today=TODAY)


@pytest.mark.parametrize(
    ("row", "fault"),
    [
        (
            GOOD[1].replace("Mary Smith", '"Mary Smith'),
            "a quote opens a field that no quote closes",
        ),
        (GOOD[1].replace("Mary Smith", '"Mary" Smith'), "text follows a field's closing quote"),
        # the csv module takes it as text, Polars does not: named by its unpaired quotes
        (
            GOOD[1].replace("Mary Smith", 'Mary "M Smith'),
            "a quote inside a field that is not quoted itself",
        ),
    ],
)
def test_a_quote_left_open_or_followed_by_text_is_named_by_its_line(
    stores, settings, tmp_path, row, fault
):
    """Polars said "CSV malformed: expected 0 rows, actual 1 rows, in chunk starting at
    row_offset 1", which names no line."""
    path = write(tmp_path, "quote.csv", [GOOD[0], row, GOOD[0].replace("S1,", "S4,")])
    with pytest.raises(LoadError) as refused:
        load_file(stores, settings, "subscribers", path, quarantine=True, today=TODAY)
    assert str(refused.value) == f"{path}: line 3: {fault}: {QUOTING}; nothing loaded"
    assert count(stores) == 0
    inside = write(tmp_path, "inside.csv", [GOOD[1].replace("Mary Smith", 'Mary "M" Smith')])
    assert load_file(stores, settings, "subscribers", inside, today=TODAY).rows_loaded == 1


def test_a_file_whose_lines_end_with_a_lone_cr_is_refused_saying_so(stores, settings, tmp_path):
    """Excel for Mac's 'CSV (Macintosh)' ends lines with CR alone: the reader took the whole
    file for its header and said a column was missing, which the file plainly has."""
    path = tmp_path / "mac.csv"
    path.write_bytes("\r".join([HEADER, *GOOD]).encode() + b"\r")
    with pytest.raises(LoadError, match=r"lines end with a lone CR.*'CSV UTF-8'"):
        load_file(stores, settings, "subscribers", path, today=TODAY)
    mixed = tmp_path / "mixed.csv"  # LF lines, then CR: the first lone CR is named
    mixed.write_bytes(f"{HEADER}\n{GOOD[0]}\r{GOOD[1]}\r".encode())
    with pytest.raises(LoadError, match=r"mixed.csv: line 2: its lines end with a lone CR"):
        load_file(stores, settings, "subscribers", mixed, today=TODAY)
    crlf = tmp_path / "windows.csv"  # CRLF is read as ever
    crlf.write_bytes("\r\n".join([HEADER, *GOOD]).encode() + b"\r\n")
    assert load_file(stores, settings, "subscribers", crlf, today=TODAY).rows_loaded == 2
