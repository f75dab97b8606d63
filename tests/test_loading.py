import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

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
    changed = [GOOD[0].replace(",gold,", ",platinum,")]
    load_file(stores, settings, "subscribers", write(tmp_path, "b.csv", changed), today=TODAY)
    assert count(stores) == 2
    assert stores.execute("SELECT tier FROM subscribers WHERE subscriber_id = 'S1'").fetchone() == (
        "platinum",
    )


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
            "phone '******' is not a valid E.164 phone number",  # masked: the original
            "email '***' is not a valid email address",  # stays in the quarantine table
            "tier 'diamond' is not a tier (standard, silver, gold, platinum)",
            "locale 'fr' is not a locale (zh-CN, en)",
            "home_store_id 'ST9' is not a known store",
        ],
    ),
    6: (
        "S1,Dup,+8613812345670,,,2015-04-10,gold,ST1,Asia/Shanghai,zh-CN,true,true,false",
        ["subscriber_id 'S1' appears more than once"],
    ),
    7: (
        "S6,,8613812345671,,,2015-04-10,standard,,Asia/Shanghai,en,false,false,false",
        ["name is missing", "phone '86*******5671' is not a valid E.164 phone number"],
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
    assert "line 5: joined_on '2030-01-01' is in the future" in str(refused.value)
    report = json.loads(
        stores.execute("SELECT report FROM load_reports WHERE NOT success").fetchone()[0]
    )
    assert report["success"] is False and report["bad_rows"]["7"]
    assert (settings.reports_dir / "validation" / f"{result.load_id}.json").exists()


def test_quarantine_loads_the_good_and_keeps_the_bad(stores, settings, tmp_path):
    path = write(tmp_path, "bad.csv", GOOD + [line for line, _ in BAD.values()])
    result = load_file(stores, settings, "subscribers", path, quarantine=True, today=TODAY)
    assert result.rows_loaded == 1 and count(stores) == 1  # S2; both S1 rows are duplicates
    kept = stores.execute(
        "SELECT line, reasons, record->>'subscriber_id' FROM quarantine ORDER BY line"
    ).fetchall()
    assert [k[0] for k in kept] == [2, 4, 5, 6, 7]
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
        4: ["visited_at '2026-02-28 10:15:00' is not an ISO 8601 time with an offset"],
    }
    at = stores.execute("SELECT epoch(visited_at) FROM store_visits").fetchone()[0]
    assert at == 1772244900  # 2026-02-28 02:15 UTC


def test_unreadable_inputs_are_named(con, settings, tmp_path):
    with pytest.raises(LoadError, match=r"missing column.*voice_consent"):
        load_file(
            con,
            settings,
            "subscribers",
            write(tmp_path, "x.csv", [], HEADER.rsplit(",", 1)[0]),
            today=TODAY,
        )
    with pytest.raises(LoadError, match="unknown entity 'people'"):
        load_file(con, settings, "people", tmp_path / "x.csv")
