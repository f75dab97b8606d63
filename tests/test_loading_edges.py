"""Loads at their edges: chunk boundaries, BOM, CRLF, quoted newlines, Parquet, visit times."""

import polars as pl
import pytest

from tests.test_loading import GOOD, HEADER, TODAY, count, stores, write  # noqa: F401
from warehouse.expectations import shown_value
from warehouse.loading import LoadRefusedError, header_hint, load_file

BAD_TIER = (
    "S9,Bad Tier,+8613812345670,,1990-01-01,2015-04-10,diamond,ST1,Asia/Shanghai,zh-CN,"
    "true,true,false"
)


def good(n: int) -> str:
    return (
        f"S{n},Name {n},+86138{n:08d},c{n}@example.com,1990-01-01,2015-04-10,gold,ST1,"
        "Asia/Shanghai,zh-CN,true,true,false"
    )


def test_a_bom_before_the_header_is_accepted(stores, settings, tmp_path):  # noqa: F811
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join([HEADER, *GOOD]) + "\n").encode())
    result = load_file(stores, settings, "subscribers", path, today=TODAY, chunk_rows=1)
    assert result.success and result.rows_loaded == 2


def test_parquet_in_chunks_names_bad_rows_by_row(stores, settings, tmp_path):  # noqa: F811
    lines = [good(n) for n in range(1, 6)] + [BAD_TIER] + [good(n) for n in range(6, 9)]
    csv = write(tmp_path, "p.csv", lines)
    frame = pl.read_csv(csv, infer_schema=False).with_columns(
        pl.col("birthday").str.to_date(),
        pl.col("joined_on").str.to_date(),
        pl.col("sms_consent") == "true",
        pl.col("email_consent") == "true",
        pl.col("voice_consent") == "true",
    )
    path = tmp_path / "p.parquet"
    frame.write_parquet(path, row_group_size=2)
    result = load_file(
        stores, settings, "subscribers", path, quarantine=True, today=TODAY, chunk_rows=4
    )
    assert list(result.bad_rows) == [6]
    assert result.rows_loaded == 8 and count(stores) == 8


def test_a_repeated_id_across_chunks_with_spaces_is_found(stores, settings, tmp_path):  # noqa: F811
    lines = [good(1), good(2), " " + good(1).replace("Name 1", "Other")]
    path = write(tmp_path, "r.csv", lines)
    with pytest.raises(LoadRefusedError) as refused:
        load_file(stores, settings, "subscribers", path, today=TODAY, chunk_rows=1)
    assert sorted(refused.value.result.bad_rows) == [2, 4]


def test_reload_without_an_optional_column_keeps_nothing_wrong(stores, settings, tmp_path):  # noqa: F811
    path = write(tmp_path, "a.csv", [good(1), good(2)])
    load_file(stores, settings, "subscribers", path, today=TODAY)
    again = write(tmp_path, "b.csv", [good(1), good(2)])
    r = load_file(stores, settings, "subscribers", again, today=TODAY, chunk_rows=1)
    assert r.rows_loaded == 2 and count(stores) == 2


def test_a_column_the_file_has_not_keeps_what_known_rows_hold(stores, settings, tmp_path):  # noqa: F811
    """A file without ``left_on`` brought back every customer who had left, and one whose
    ``phone`` and ``email`` were misnamed (``mobile``) emptied both for every row it named,
    with only "ignored column(s)" said. A column the file has, left empty, still empties."""
    full = write(
        tmp_path, "full.csv", [good(1) + ",2026-01-15", good(2) + ","], HEADER + ",left_on"
    )
    load_file(stores, settings, "subscribers", full, today=TODAY)
    renamed = HEADER.replace(",phone,", ",mobile,").replace(",email,", ",e-mail,")
    rows = [good(1).replace("Name 1", "New Name"), good(2).replace("c2@example.com", ""), good(3)]
    result = load_file(
        stores, settings, "subscribers", write(tmp_path, "part.csv", rows, renamed), today=TODAY
    )
    assert result.absent_columns == ["phone", "email", "left_on"]
    assert result.ignored_columns == ["mobile", "e-mail"]
    held = stores.execute(
        "SELECT subscriber_id, name, phone, email, left_on::VARCHAR FROM subscribers ORDER BY 1"
    ).fetchall()
    assert held == [
        ("S1", "New Name", "+8613800000001", "c1@example.com", "2026-01-15"),
        ("S2", "Name 2", "+8613800000002", "c2@example.com", None),
        ("S3", "Name 3", None, None, None),  # new: nothing to keep
    ]
    emptied = write(tmp_path, "emptied.csv", [good(2).replace("c2@example.com", "")])
    load_file(stores, settings, "subscribers", emptied, today=TODAY)
    assert stores.execute(
        "SELECT email FROM subscribers WHERE subscriber_id = 'S2'"
    ).fetchall() == [(None,)]


VISITS = "visit_id,subscriber_id,store_id,visited_at,service_type"


def test_a_visits_file_with_one_visit_loads(stores, settings, tmp_path):  # noqa: F811
    """One distinct visited_at in a batch: pandas maps a one-category column to a categorical
    (GX's dateutil check cannot negate it); date columns get unused categories, timestamps
    do not."""
    load_file(stores, settings, "subscribers", write(tmp_path, "a.csv", GOOD), today=TODAY)
    path = write(tmp_path, "v.csv", ["V1,S1,ST1,2026-02-28 10:15,repair"], VISITS)
    result = load_file(stores, settings, "visits", path, today=TODAY)
    assert result.success and result.rows_loaded == 1
    # ...and the kept GX result agrees: no expectation failed (it raised on the categorical)
    failed = [s for s in result.validation.summary if not s["success"]]
    assert failed == []


def test_an_impossible_visit_time_is_refused_by_line(stores, settings, tmp_path):  # noqa: F811
    load_file(stores, settings, "subscribers", write(tmp_path, "a.csv", GOOD), today=TODAY)
    rows = ["V1,S1,ST1,2026-02-28 10:15,repair", "V2,S2,ST1,2026-02-30 10:15,repair"]
    path = write(tmp_path, "v.csv", rows, VISITS)
    with pytest.raises(LoadRefusedError) as refused:
        load_file(stores, settings, "visits", path, today=TODAY, chunk_rows=1)
    assert list(refused.value.result.bad_rows) == [3]


def test_an_impossible_visit_time_is_quarantined_and_the_rest_load(stores, settings, tmp_path):  # noqa: F811
    """Two distinct visited_at values, one parseable and one not: pandas' categorical map is
    one-to-one, GX's dateutil check raises instead of naming the row, and the unparsed time
    reaches the NOT NULL column (the whole load fails with a DuckDB constraint error)."""
    load_file(stores, settings, "subscribers", write(tmp_path, "a.csv", GOOD), today=TODAY)
    rows = ["V1,S1,ST1,2026-02-28 10:15,repair", "V2,S2,ST1,2026-02-30 10:15,repair"]
    path = write(tmp_path, "v.csv", rows, VISITS)
    result = load_file(stores, settings, "visits", path, quarantine=True, today=TODAY)
    assert list(result.bad_rows) == [3] and result.rows_loaded == 1


def test_a_visit_after_the_business_days_end_is_in_the_future(stores, settings, tmp_path):  # noqa: F811
    """A year mistyped (2027 for 2026) was loaded, and the store visit's survey would have gone
    a year on, about a visit no one made. A time with no offset is its store's local time,
    which only the warehouse knows: it is in the future only if it is so in every zone."""
    load_file(stores, settings, "subscribers", write(tmp_path, "a.csv", GOOD), today=TODAY)
    rows = [
        "V1,S1,ST1,2026-03-01 23:59,repair",  # the business day's last minute, Shanghai's
        "V2,S1,ST1,2026-03-02T00:00:00+08:00,repair",  # its end
        "V3,S1,ST1,2027-03-01 10:15,repair",
        "V4,S2,ST1,2026-03-01T15:59:59Z,repair",  # 23:59:59 in Shanghai
        "V5,S2,ST1,2026-03-02 13:00,repair",  # after the day's end even at UTC+14
        "V6,S2,ST1,2026-03-02 05:00,repair",  # before it at UTC+14: a store there, maybe
    ]
    path = write(tmp_path, "v.csv", rows, VISITS)
    result = load_file(stores, settings, "visits", path, quarantine=True, today=TODAY)
    assert result.bad_rows == {
        3: ["visited_at '2026-03-02T00:00:00+08:00' is in the future"],
        4: ["visited_at '2027-03-01 10:15' is in the future"],
        6: ["visited_at '2026-03-02 13:00' is in the future"],
    }
    assert result.rows_loaded == 3


def test_empty_optional_columns_in_a_chunk_of_their_own(stores, settings, tmp_path):  # noqa: F811
    empty = "S3,空白,,,,2015-04-10,gold,,Asia/Shanghai,zh-CN,false,false,false"
    path = write(tmp_path, "e.csv", [GOOD[0], empty, GOOD[1]])
    result = load_file(stores, settings, "subscribers", path, today=TODAY, chunk_rows=1)
    assert result.success and result.rows_loaded == 3
    assert all(s["success"] for s in result.validation.summary), result.validation.summary


@pytest.mark.parametrize("chunk_rows", [1, 2, 100])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_blank_lines_are_no_rows(stores, settings, tmp_path, chunk_rows, newline):  # noqa: F811
    """An editor's extra line at the end, a blank line or one of commas only in the middle:
    no row, neither refused nor quarantined; the lines after them keep their numbers."""
    lines = [HEADER, good(1), "", good(2), ",,,,,,,,,,,,", BAD_TIER, good(3), "", ""]
    path = tmp_path / "blank.csv"
    path.write_bytes(newline.join(lines).encode())
    result = load_file(
        stores, settings, "subscribers", path, quarantine=True, today=TODAY, chunk_rows=chunk_rows
    )
    assert list(result.bad_rows) == [6]  # BAD_TIER, on the file's 6th line
    assert (result.rows_read, result.rows_loaded, count(stores)) == (4, 3, 3)
    good_only = tmp_path / "good.csv"
    good_only.write_bytes(newline.join([HEADER, good(1), good(2), "", ""]).encode())
    again = load_file(stores, settings, "subscribers", good_only, today=TODAY, chunk_rows=1)
    assert again.success and again.rows_loaded == 2


def test_a_line_with_text_only_in_a_column_not_loaded_is_a_row(stores, settings, tmp_path):  # noqa: F811
    """Empty in every column of the kind but not in the file's own: a row without its id,
    told as bad, never left out as blank."""
    path = tmp_path / "extra.csv"
    path.write_text("\n".join([HEADER + ",note", good(1) + ",", ",,,,,,,,,,,,,kept?", ""]))
    with pytest.raises(LoadRefusedError) as refused:
        load_file(stores, settings, "subscribers", path, today=TODAY, chunk_rows=1)
    assert list(refused.value.result.bad_rows) == [3]


@pytest.mark.parametrize("chunk_rows", [1, 2, 100])
def test_a_row_after_quoted_breaks_is_named_by_its_line(stores, settings, tmp_path, chunk_rows):  # noqa: F811
    """A name with line breaks in quotes spans lines: the rows after it are named by the
    file's line (as an editor shows it), not by their count."""
    two_lines = good(1).replace("Name 1", '"Name\nover two"')
    three_lines = good(2).replace("Name 2", '"one\r\ntwo\nthree"')
    lines = [HEADER, two_lines, good(3), three_lines, BAD_TIER, good(4)]
    path = tmp_path / "multi.csv"
    path.write_text("\n".join(lines) + "\n")
    result = load_file(
        stores, settings, "subscribers", path, quarantine=True, today=TODAY, chunk_rows=chunk_rows
    )
    assert list(result.bad_rows) == [8]  # header 1, S1 2-3, S3 4, S2 5-7, S9 8
    assert result.rows_loaded == 4
    # a column name in quotes over two lines (a column the kind does not load)
    path.write_text(
        "\n".join([HEADER + ',"a note\nover two lines"', good(5) + ",", BAD_TIER + ","])
    )
    again = load_file(
        stores, settings, "subscribers", path, quarantine=True, today=TODAY, chunk_rows=chunk_rows
    )
    assert list(again.bad_rows) == [4]  # header 1-2, S5 3, S9 4
    # blank lines before the header (one a BOM's only), which the reader skips
    path.write_bytes(b"\xef\xbb\xbf\n\r\n\n" + "\n".join([HEADER, good(6), BAD_TIER]).encode())
    after_blanks = load_file(
        stores, settings, "subscribers", path, quarantine=True, today=TODAY, chunk_rows=chunk_rows
    )
    assert list(after_blanks.bad_rows) == [6]  # blank 1-3, header 4, S6 5, S9 6


def test_quarantined_rows_fixed_and_loaded_back_keep_what_their_file_had_not(
    stores,  # noqa: F811
    settings,
    tmp_path,
):
    """The quarantine CSV held every column of the kind, those the file lacked empty: loaded
    back once fixed, as the README says it can be, it emptied them (phone, email)."""
    load_file(stores, settings, "subscribers", write(tmp_path, "a.csv", [good(1)]), today=TODAY)
    no_contacts = HEADER.replace(",phone,email", "")
    row = good(1).replace(",+8613800000001,c1@example.com", "").replace("gold", "diamond")
    result = load_file(
        stores, settings, "subscribers", write(tmp_path, "b.csv", [row], no_contacts),
        quarantine=True, today=TODAY,
    )  # fmt: skip
    kept = result.quarantine_file.read_text(encoding="utf-8-sig")
    assert kept.splitlines()[0] == "line," + no_contacts + ",reasons"
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(kept.replace("diamond", "silver"), encoding="utf-8")
    assert load_file(stores, settings, "subscribers", fixed, today=TODAY).rows_loaded == 1
    assert stores.execute("SELECT tier, phone, email FROM subscribers").fetchall() == [
        ("silver", "+8613800000001", "c1@example.com")
    ]


def test_a_file_named_like_a_pattern_is_that_file(stores, settings, tmp_path):  # noqa: F811
    """Polars read a path as a glob: "list[1].csv" loaded "list1.csv" beside it, without a
    word, or, alone, was refused as "expanded paths were empty"."""
    named = write(tmp_path, "list[1].csv", [good(1)])
    write(tmp_path, "list1.csv", ["S2,Other"], "subscriber_id,name")  # another header
    assert load_file(stores, settings, "subscribers", named, today=TODAY).rows_loaded == 1
    assert stores.execute("SELECT subscriber_id FROM subscribers").fetchall() == [("S1",)]
    alone = write(tmp_path, "only[2].csv", [good(3)])
    assert load_file(stores, settings, "subscribers", alone, today=TODAY).rows_loaded == 1
    parquet = tmp_path / "p[1].parquet"
    pl.read_csv(named, infer_schema=False, glob=False).write_parquet(parquet)
    assert load_file(stores, settings, "subscribers", parquet, today=TODAY).rows_loaded == 1


def test_a_column_written_otherwise_is_named_beside_the_one_it_may_mean():
    """A file with Phone and Email loaded as if it had neither, saying only that phone and
    email were not in the file and Phone and Email were ignored (`careloop load` now adds
    this, as a refusal for a required column does)."""
    assert header_hint(["phone", "email", "left_on"], ["Phone", " Email ", "mobile"]) == (
        " (the file has 'Phone' for phone, ' Email ' for email: names are lower case, exactly)"
    )
    assert header_hint(["phone"], ["mobile"]) == ""
    assert header_hint(["left_on"], ["notes;comments"]) == ""  # an extra column, not a split


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("447911123456", "44******3456"),  # an MSISDN: its '+' left out
        ("13800138000.0", "13*****8000"),  # a spreadsheet's float of a mobile
        ("14912345678", "14*****5678"),  # a Chinese mobile's shape, a range the library lacks
        ("+1 415 555 0100", "+1******0100"),
        ("20240001", "20240001"),  # customer numbers stay readable
        ("3000000001", "3000000001"),
        ("2024-03-01", "2024-03-01"),
    ],
)
def test_a_subscriber_id_that_may_be_a_phone_number_is_masked(given, shown):
    """Masked when in doubt: a version that asked only whether the number was a valid
    Chinese one showed MSISDNs and a mobile saved as a float in full."""
    assert shown_value("subscriber_id", given) == shown


def test_a_name_longer_than_a_name_is_refused_showing_its_start(stores, settings, tmp_path):  # noqa: F811
    """A 2-million-character name loaded, and its greeting was queued as a 13,000-part SMS;
    the reason showed the whole value."""
    longest = good(1).replace("Name 1", "x" * 100)
    too_long = good(2).replace("Name 2", "李" * 2_000)
    path = write(tmp_path, "long.csv", [longest, too_long])
    with pytest.raises(LoadRefusedError) as refused:
        load_file(stores, settings, "subscribers", path, today=TODAY)
    reasons = refused.value.result.bad_rows
    assert list(reasons) == [3]
    [reason] = reasons[3]
    assert reason.endswith("… (2,000 characters)' is longer than 100 characters"), reason
    assert len(reason) < 180
