import csv
import io
import json
from datetime import UTC, date, datetime

import pytest
import typer
from typer.testing import CliRunner

from campaigns.spec import DEFINITIONS_DIR
from careloop.cli import app
from segments.registry import SegmentError, load_rules
from segments.testing import run_rule_tests
from tests.factories import add_store, add_subscriber
from warehouse.db import connect

runner = CliRunner()


@pytest.fixture
def warehouse_with_people(settings):
    con = connect(settings.warehouse_path)
    add_store(con)
    add_subscriber(con, "S1", birthday=date(2000, 2, 29))
    add_subscriber(
        con, "S2", birthday=date(1990, 2, 28), sms_consent=False, email=None, voice_consent=False
    )
    add_subscriber(con, "S3", birthday=date(1990, 3, 1))
    con.close()
    return settings


def test_builtin_rules_pass_their_own_yaml_tests():
    results = [r for rule in load_rules().values() for r in run_rule_tests(rule)]
    assert len(results) >= 30
    assert [r for r in results if not r.passed] == []


def test_a_wrong_expectation_fails_with_the_difference(tmp_path):
    (tmp_path / "r.sql").write_text("SELECT subscriber_id FROM subscriber_profile")
    (tmp_path / "r.yml").write_text(
        "description: everyone\ntests:\n  examples:\n    - as_of: 2026-01-01\n"
        "      given: {subscribers: [{subscriber_id: A}, {subscriber_id: B}]}\n"
        "      expect: [A]\n"
    )
    [compiles, result] = run_rule_tests(load_rules(tmp_path)["r"])
    assert compiles.passed and compiles.test == "compiles"
    assert not result.passed and result.detail == "expected ['A'], got ['A', 'B']"


def test_an_example_given_a_view_names_the_tables_it_can_fill(tmp_path):
    """A newcomer's first example filled `visits`, the view the rule reads: "unknown table
    'visits'" named nothing it could give instead."""
    (tmp_path / "r.sql").write_text("SELECT DISTINCT subscriber_id FROM visits")
    (tmp_path / "r.yml").write_text(
        "description: visitors\ntests:\n  examples:\n    - as_of: 2026-01-01\n"
        "      given: {visits: [{subscriber_id: A}]}\n      expect: [A]\n"
    )
    [_, result] = run_rule_tests(load_rules(tmp_path)["r"])
    assert not result.passed
    assert "unknown table 'visits'" in result.detail and "store_visits" in result.detail


def test_a_rule_that_does_not_compile_fails_its_tests_without_examples(tmp_path):
    """`segment test` said "0 passed, 0 failed" for a rule of bad SQL with no examples; a
    campaign using it failed only when it ran."""
    (tmp_path / "r.sql").write_text("SELEC subscriber_id FROM subscriber_profile")
    (tmp_path / "r.yml").write_text("description: everyone\n")
    [result] = run_rule_tests(load_rules(tmp_path)["r"])
    assert (result.test, result.passed) == ("compiles", False)
    assert result.detail.startswith("SQL does not compile: Parser Error"), result.detail


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT subscriber_id FROM subscriber_profile\nWHERE tier = 'gold'  -- gold only",
        "SELECT subscriber_id FROM subscriber_profile WHERE tier = 'gold'; -- gold only\n",
        "SELECT subscriber_id FROM subscriber_profile WHERE tier = 'gold' /* gold */ ;\n-- end",
        "-- gold members\nSELECT subscriber_id FROM subscriber_profile WHERE tier = 'gold';",
        "SELECT subscriber_id FROM subscriber_profile WHERE tier = 'gold';;",
        # a semicolon and a comment inside a string are the string's
        "SELECT subscriber_id FROM subscriber_profile WHERE tier = 'gold' "
        "AND subscriber_id <> '; -- ';",
        # an apostrophe in a comment is the comment's
        "-- members who haven't visited\nSELECT subscriber_id FROM subscriber_profile "
        "WHERE tier = 'gold';",
        "SELECT subscriber_id FROM subscriber_profile WHERE tier = 'gold' -- don't change\n;",
        # block comments nest; a dollar-quoted string is a string
        "SELECT subscriber_id FROM subscriber_profile WHERE tier = 'gold';\n"
        "/* gold only /* was: silver */ don't widen */",
        "SELECT subscriber_id FROM subscriber_profile WHERE tier = 'gold' "
        "AND subscriber_id <> $$--$$;",
        # a word ending in e before a quote is no E'' string: its backslash is plain
        "SELECT subscriber_id FROM subscriber_profile WHERE tier = 'gold' "
        "AND subscriber_id NOT LIKE '%\\_%' ESCAPE'\\';",
    ],
    ids=[
        "comment-at-the-end",
        "comment-after-semicolon",
        "block-comment",
        "comment-first",
        "two-semicolons",
        "in-a-string",
        "apostrophe-in-a-comment",
        "semicolon-after-one",
        "nested-block-comment",
        "dollar-quoted",
        "escape-after-a-word",
    ],
)
def test_a_rule_with_comments_at_its_end_runs(tmp_path, sql):
    """SQL that DuckDB runs as it is was refused as "syntax error at or near ..." once set in
    the subquery a rule runs in: the closing line comment took the parenthesis."""
    (tmp_path / "r.sql").write_text(sql)
    (tmp_path / "r.yml").write_text(
        "description: gold\ntests:\n  examples:\n    - as_of: 2026-01-01\n"
        "      given: {subscribers: [{subscriber_id: A, tier: gold}, {subscriber_id: B}]}\n"
        "      expect: [A]\n"
    )
    results = run_rule_tests(load_rules(tmp_path)["r"])
    assert [r.detail for r in results if not r.passed] == []


def test_a_rule_of_two_statements_is_refused_saying_so(tmp_path):
    (tmp_path / "r.sql").write_text("SELECT 1 AS subscriber_id; SELECT 2 AS subscriber_id;")
    (tmp_path / "r.yml").write_text("description: two\n")
    with pytest.raises(SegmentError, match=r"r\.sql: holds 2 statements: a rule is one SELECT"):
        load_rules(tmp_path)


def test_a_rules_yaml_with_a_key_it_does_not_know_is_refused_naming_it(tmp_path):
    """The README once said "parameters"; the key is params, and the other was ignored: the
    rule then failed on "undeclared parameter(s)", naming its SQL, not the YAML."""
    (tmp_path / "r.sql").write_text("SELECT subscriber_id FROM subscriber_profile LIMIT $n")
    (tmp_path / "r.yml").write_text(
        "description: some\nparameters:\n  n: {type: integer, default: 5}\n"
    )
    with pytest.raises(SegmentError, match=r"r\.yml: unknown key\(s\) parameters; known: desc"):
        load_rules(tmp_path)


def test_a_rules_yaml_with_a_parameter_given_twice_is_refused_naming_both_lines(tmp_path):
    (tmp_path / "r.sql").write_text("SELECT subscriber_id FROM subscriber_profile LIMIT $n")
    (tmp_path / "r.yml").write_text(
        "description: some\nparams:\n  n: {type: integer, default: 5}\n"
        "  n: {type: integer, default: 50}\n"
    )
    with pytest.raises(
        SegmentError, match=r"r\.yml: invalid YAML: key 'n' given twice \(lines 3 and 4"
    ):
        load_rules(tmp_path)


def test_segment_preview_csv_json_and_params(warehouse_with_people):
    out = runner.invoke(
        app, ["segment", "preview", "birthday", "--as-of", "2025-02-28", "--format", "csv"]
    )
    assert out.exit_code == 0, out.output
    rows = list(csv.reader(io.StringIO(out.output)))
    assert rows[0][0] == "subscriber_id" and rows[0] == ["subscriber_id", "occasion", "age"]
    assert [r[0] for r in rows[1:]] == ["S1", "S2"]
    as_json = runner.invoke(
        app,
        [
            "segment",
            "preview",
            "tenure",
            "--as-of",
            "2016-04-10",
            "--param",
            "milestones=[1]",
            "--format",
            "json",
        ],
    )
    assert json.loads(as_json.output) == [
        {"subscriber_id": s, "occasion": "tenure-1", "tenure_years": 1} for s in ("S1", "S2", "S3")
    ]


def test_segment_test_and_show_and_list():
    expected = sum(len(run_rule_tests(rule)) for rule in load_rules().values())
    output = " ".join(runner.invoke(app, ["segment", "test"]).output.split())
    assert f"{expected} passed, 0 failed" in output
    shown = runner.invoke(app, ["segment", "show", "tenure"]).output
    assert "milestone_every = 5" in shown and "list_contains" in shown
    assert "store_visit" in runner.invoke(app, ["segment", "list"]).output
    assert runner.invoke(app, ["segment", "show", "nope"]).exit_code == 2


def test_audience_preview_says_why_not(warehouse_with_people):
    out = runner.invoke(
        app, ["audience", "preview", "birthday", "--as-of", "2025-02-28", "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    got = {
        r["subscriber_id"]: (r["decision"], r["reason"], r["channel"])
        for r in json.loads(out.output)
    }
    assert got["S2"] == ("not_contacted", "no_consent", None)
    assert got["S1"][0] in ("contact", "held_out") and got["S1"][2] == "sms"
    con = connect(warehouse_with_people.warehouse_path)
    assert con.execute("SELECT count(*) FROM care_actions").fetchone() == (0,)  # a dry run
    con.close()


def campaign_on_a_new_rule(settings, tmp_path, name, sql, spec):
    """Campaign ``gold_thanks`` (the store-visit campaign's messages) on rule ``name``, added
    as two files beside the built-in rules, as the data team adds one."""
    from campaigns.catalog import load_campaigns

    rules, definitions = new_rule_files(tmp_path, name, sql, spec)
    return rules, load_campaigns(settings, definitions, rules)["gold_thanks"]


def new_rule_files(tmp_path, name, sql, spec):
    """The folders of ``campaign_on_a_new_rule``: (rules, campaigns), loaded by none yet."""
    import shutil

    from segments.registry import RULES_DIR

    rules = tmp_path / "rules"
    shutil.copytree(RULES_DIR, rules)
    (rules / f"{name}.sql").write_text(sql)
    (rules / f"{name}.yml").write_text(spec)
    definitions = tmp_path / "campaigns"
    definitions.mkdir()
    text = (DEFINITIONS_DIR / "store_visit.yaml").read_text()
    (definitions / "gold_thanks.yaml").write_text(
        text.replace("segment: store_visit", f"segment: {name}")
    )
    return rules, definitions


@pytest.mark.parametrize(
    "occasion", ["DATE '2026-01-01'", "year($as_of::DATE)"], ids=["date", "number"]
)
def test_a_rule_whose_occasion_is_a_date_or_a_number_plans_each_member_once(
    settings, tmp_path, occasion
):
    # The outbox keeps the occasion as text (a date as a timestamp's): the plan's check for
    # members planned already must find them whatever the rule's type, also on a later day
    # (another action id: only that check keeps the second plan out).
    from tests.test_planning import plan_loaded

    _, loaded = campaign_on_a_new_rule(
        settings, tmp_path, "gold_daily",
        f"SELECT subscriber_id, {occasion} AS occasion FROM subscriber_profile WHERE tier = 'gold'",
        "description: gold members, once an occasion\nowner: data-team\n"
        "columns:\n  subscriber_id: the member\n",
    )  # fmt: skip
    con = connect(settings.warehouse_path)
    add_store(con)
    add_subscriber(con, "S1", tier="gold")
    plan_loaded(con, settings, loaded, as_of=date(2026, 1, 1), run="r1")
    later = plan_loaded(con, settings, loaded, as_of=date(2026, 1, 2), run="r2")
    assert later.figures["already_planned"] == 1
    assert con.execute("SELECT subscriber_id, run_id FROM care_actions").fetchall() == [
        ("S1", "r1")
    ]
    con.close()


def test_a_rule_added_as_two_files_runs_in_a_campaign(settings, tmp_path):
    from tests.test_planning import plan_loaded

    rules, loaded = campaign_on_a_new_rule(
        settings, tmp_path, "gold_members",
        "SELECT subscriber_id, 'gold-' || strftime($as_of::DATE, '%Y') AS occasion\n"
        "FROM subscriber_profile WHERE tier = $tier",
        "description: members of one tier\nowner: data-team\n"
        "params:\n  tier: {type: string, default: gold}\ncolumns:\n  subscriber_id: the member\n"
        "tests:\n  examples:\n    - as_of: 2026-01-01\n"
        "      given: {subscribers: [{subscriber_id: A, tier: gold}, {subscriber_id: B}]}\n"
        "      expect: [A]\n",
    )  # fmt: skip
    assert run_rule_tests(load_rules(rules)["gold_members"])[0].passed
    con = connect(settings.warehouse_path)
    add_store(con)
    add_subscriber(con, "S1", tier="gold")
    add_subscriber(con, "S2")
    plan_loaded(con, settings, loaded)
    assert con.execute("SELECT subscriber_id, occasion, status FROM care_actions").fetchall() == [
        ("S1", "gold-2026", "queued")
    ]
    con.close()


def test_a_broken_rule_stops_only_the_campaigns_that_use_it(settings, tmp_path):
    """One bad rule file added by the data team stopped every campaign's run, `careloop
    campaigns` and `segment list`: loaded for a run, the others load and it is said why the
    broken ones do not; loaded strictly (the demo), it raises as before."""
    from campaigns.catalog import Broken, load_campaigns

    rules, definitions = new_rule_files(
        tmp_path, "gold_daily", "SELECT subscriber_id FROM subscriber_profile LIMIT $days",
        "description: gold members\n",
    )  # fmt: skip
    (definitions / "birthday.yaml").write_text((DEFINITIONS_DIR / "birthday.yaml").read_text())
    broken = Broken()
    catalog = load_campaigns(settings, definitions, rules, broken)
    assert list(catalog) == ["birthday"]
    assert list(broken.rules) == ["gold_daily"] and "$days" in broken.rules["gold_daily"]
    assert broken.campaigns == {
        "gold_thanks": f"{definitions / 'gold_thanks.yaml'}: uses segment 'gold_daily', "
        "which cannot load"
    }
    with pytest.raises(SegmentError, match=r"gold_daily\.sql: uses undeclared parameter"):
        load_campaigns(settings, definitions, rules)


def test_a_broken_dissatisfied_rule_is_every_campaigns_second_round(settings, tmp_path):
    from campaigns.catalog import Broken, load_campaigns

    rules, definitions = new_rule_files(
        tmp_path, "fine", "SELECT subscriber_id FROM subscriber_profile", "description: everyone\n"
    )
    (rules / "dissatisfied.sql").write_text("SELECT subscriber_id FROM nowhere LIMIT $n")
    broken = Broken()
    assert load_campaigns(settings, definitions, rules, broken) == {}
    assert "uses segment 'dissatisfied', which cannot load" in broken.campaigns["gold_thanks"]


def test_the_second_round_of_the_campaigns_that_load_runs_and_the_run_fails_naming_the_other(
    settings, tmp_path, monkeypatch
):
    """The second round reads every campaign: one broken file stopped every campaign's
    second round. The others' are made, then the run fails naming the broken one."""
    import flows.second_round
    from campaigns.catalog import load_campaigns
    from campaigns.spec import CampaignError

    rules, definitions = new_rule_files(
        tmp_path, "fine", "SELECT subscriber_id FROM subscriber_profile", "description: everyone\n"
    )
    (definitions / "broken.yaml").write_text("name: broken\n")
    # the flow's own loading, from these folders instead of the built-in ones
    monkeypatch.setattr(
        flows.second_round,
        "load_campaigns",
        lambda s, broken=None: load_campaigns(s, definitions, rules, broken),
    )
    with pytest.raises(CampaignError, match=r"no second round for: broken \(.*broken\.yaml"):
        flows.second_round.second_round(as_of=date(2026, 3, 1), send=False)
    con = connect(settings.warehouse_path)
    runs = con.execute("SELECT campaign_id FROM campaign_runs WHERE round = 2").fetchall()
    con.close()
    assert runs == [("gold_thanks",)]


def test_a_misspelt_test_kind_fails_that_rules_tests_only(tmp_path):
    (tmp_path / "a.sql").write_text("SELECT subscriber_id FROM subscriber_profile")
    (tmp_path / "a.yml").write_text("description: every\ntests:\n  uniqe: [subscriber_id]\n")
    (tmp_path / "b.sql").write_text("SELECT subscriber_id FROM subscriber_profile")
    (tmp_path / "b.yml").write_text("description: every\n")
    rules = load_rules(tmp_path)
    [misspelt] = run_rule_tests(rules["a"])
    assert not misspelt.passed and "unknown test kind(s) ['uniqe']" in misspelt.detail
    assert [r.passed for r in run_rule_tests(rules["b"])] == [True]


def test_a_definition_not_saved_as_utf8_is_named_like_any_broken_one(settings, tmp_path):
    """A campaign or rule file saved as GB18030 stopped every campaign with "'utf-8' codec
    can't decode byte 0xb9", naming no file."""
    from campaigns.catalog import Broken, load_campaigns

    rules, definitions = new_rule_files(
        tmp_path, "fine", "SELECT subscriber_id FROM subscriber_profile", "description: 每个人\n"
    )
    (rules / "fine.yml").write_bytes("description: 每个人\n".encode("gb18030"))
    gbk = (DEFINITIONS_DIR / "birthday.yaml").read_text().encode("gb18030")
    (definitions / "birthday.yaml").write_bytes(gbk)
    broken = Broken()
    assert load_campaigns(settings, definitions, rules, broken) == {}
    assert "fine.yml: cannot read as UTF-8 text" in broken.rules["fine"]
    assert "birthday.yaml: cannot read as UTF-8 text" in broken.campaigns["birthday"]


def test_a_broken_definitions_error_is_shown_whole_brackets_and_all(capsys):
    """Shown as console markup, "channels: [sms, email" lost its bracketed part, and a
    "[/b]" in a file stopped the listing with a MarkupError."""
    from careloop.cli import _show_broken

    errors = ["x.yaml: channels: [sms, email: expected ']'", "y.yml: unknown key(s) [/b]"]
    with pytest.raises(typer.Exit):
        _show_broken(errors)
    shown = " ".join(capsys.readouterr().err.split())
    assert all(error in shown for error in errors), shown
    result = runner.invoke(app, ["segment", "show", "no-such-[/b]-rule"])
    assert result.exit_code == 2 and "no-such-[/b]-rule" in result.output, result.output


@pytest.mark.parametrize(
    "tests",
    [
        "  examples:\n    - just a string\n",
        "  examples:\n    - {as_of: 2026-01-01, given: {subscribers: {subscriber_id: S1}}, "
        "expect: []}\n",
        "  accepted_values: [1, 2]\n  examples:\n    - {as_of: 2026-01-01, expect: []}\n",
        "  examples: 5\n",
    ],
)
def test_a_malformed_test_fails_that_rule_naming_its_file(tmp_path, tests):
    """Each stopped `segment test` for every rule with an AttributeError or a TypeError."""
    (tmp_path / "a.sql").write_text("SELECT subscriber_id FROM subscriber_profile")
    (tmp_path / "a.yml").write_text(f"description: every\ntests:\n{tests}")
    results = run_rule_tests(load_rules(tmp_path)["a"])
    failed = [r for r in results if not r.passed]
    assert failed and all("a.yml" in r.detail for r in failed), results


def test_segment_test_of_a_rule_that_cannot_load_fails_as_the_unnamed_one_does(
    tmp_path, monkeypatch
):
    """Named, it stopped with exit 2 (a usage error), where `segment test` alone lists it as
    failing to load and exits 1, as the README says of both."""
    import segments.registry

    (tmp_path / "r.sql").write_text("SELECT subscriber_id FROM subscriber_profile LIMIT $n")
    (tmp_path / "r.yml").write_text("description: some\n")
    real = segments.registry.load_rules
    monkeypatch.setattr(
        segments.registry, "load_rules", lambda broken=None: real(tmp_path, broken=broken)
    )
    for args in (["segment", "test", "r"], ["segment", "test"]):
        done = runner.invoke(app, args)
        said = " ".join(done.output.split())
        assert done.exit_code == 1 and "FAIL r: loads" in said and "undeclared" in said, said
    assert runner.invoke(app, ["segment", "test", "nope"]).exit_code == 2  # no such rule


def test_a_date_a_rule_returns_is_shown_as_a_date(warehouse_with_people, tmp_path, monkeypatch):
    """A DATE column came out as a midnight with no zone: "2025-06-11T00:00:00" in JSON,
    "2025-06-11 00:00:00" in CSV, neither a date nor a moment as the README writes one."""
    (tmp_path / "born.sql").write_text(
        "SELECT subscriber_id, birthday AS born, TIMESTAMPTZ '2026-03-01 08:00:00+00' AS seen, "
        "INTERVAL 3 DAY AS waited FROM subscriber_profile WHERE subscriber_id = 'S3'"
    )
    (tmp_path / "born.yml").write_text("description: when they were born\n")
    monkeypatch.setattr("careloop.cli._rules", lambda: (load_rules(tmp_path), {}))
    as_json = runner.invoke(app, ["segment", "preview", "born", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    [row] = json.loads(as_json.output)
    assert row["born"] == "1990-03-01"
    assert datetime.fromisoformat(row["seen"]) == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert row["waited"] == "3 days"  # polars takes no interval from Arrow: the preview stopped
    as_csv = runner.invoke(app, ["segment", "preview", "born", "--format", "csv"])
    assert as_csv.output.splitlines()[1].split(",")[:2] == ["S3", "1990-03-01"]
