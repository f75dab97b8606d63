"""Load segment rules from ``segments/rules`` and run them set-based in DuckDB.

A rule is ``NAME.sql`` (a SELECT returning ``subscriber_id`` and any extra columns) with
``NAME.yml`` beside it (description, owner, parameters with defaults, output columns). Rules read
the documented warehouse views. Every rule gets ``$as_of`` (DATE) and ``$as_of_end`` (the UTC
midnight that ends the as-of day); any other ``$name`` must be a declared parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb

from core.errors import UserError
from core.yaml_files import YamlFileError, read_text, read_yaml
from segments.params import ParamError, ParamSpec

RULES_DIR = Path(__file__).parent / "rules"
BUILTIN_PARAMS = ("as_of", "as_of_end")
_PARAM_REF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_COMMENT = re.compile(r"--[^\n]*")


class SegmentError(UserError, ValueError):
    """A rule that cannot be used, named by its file and the reason."""

    def __init__(self, source: Path | str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


@dataclass(frozen=True)
class SegmentRule:
    name: str
    sql: str
    path: Path
    description: str
    owner: str
    param_specs: dict[str, ParamSpec] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    tests: dict[str, Any] = field(default_factory=dict)

    @property
    def params(self) -> dict[str, Any]:
        """Each declared parameter's default."""
        return {name: spec.default for name, spec in self.param_specs.items()}

    @property
    def subquery(self) -> str:
        # on lines of its own: a line comment at the SQL's end would take the parenthesis
        return f"(\n{self.sql}\n)"

    @property
    def referenced_params(self) -> set[str]:
        return set(_PARAM_REF.findall(_COMMENT.sub("", self.sql)))

    def bind(self, as_of: date, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The parameter values for one run; an unknown override is an error naming it."""
        overrides = overrides or {}
        declared_in = self.path.with_suffix(".yml")  # where a parameter's bounds are
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise SegmentError(
                declared_in,
                f"unknown parameter(s) {', '.join(unknown)}; "
                f"declared: {', '.join(sorted(self.params)) or 'none'}",
            )
        try:
            checked = {name: self.param_specs[name].check(v) for name, v in overrides.items()}
        except ParamError as exc:
            raise SegmentError(declared_in, str(exc)) from None
        values = {**self.params, **checked}
        values["as_of"] = as_of
        values["as_of_end"] = datetime.combine(as_of + timedelta(days=1), time(), tzinfo=UTC)
        return {name: values[name] for name in self.referenced_params}


RULE_KEYS = ("description", "owner", "params", "columns", "tests")  # a rule's YAML


def load_rule(sql_path: Path) -> SegmentRule:
    meta_path = sql_path.with_suffix(".yml")
    if not meta_path.exists():
        raise SegmentError(sql_path, f"missing {meta_path.name} beside it")
    try:
        meta = read_yaml(meta_path) or {}
    except YamlFileError as exc:
        raise SegmentError(meta_path, str(exc)) from None
    if not isinstance(meta, dict):
        raise SegmentError(meta_path, "must be a mapping")
    unknown = sorted(str(key) for key in meta if key not in RULE_KEYS)
    if unknown:  # a misspelt key ("parameters") was ignored, and its parameters undeclared
        raise SegmentError(
            meta_path, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(RULE_KEYS)}"
        )
    params = {
        str(name): _param_spec(meta_path, str(name), spec)
        for name, spec in (meta.get("params") or {}).items()
    }
    rule = SegmentRule(
        name=sql_path.stem,
        sql=_one_statement(sql_path, _text(sql_path)),
        path=sql_path,
        description=str(meta.get("description", "")).strip(),
        owner=str(meta.get("owner", "")),
        param_specs=params,
        columns={str(k): str(v) for k, v in (meta.get("columns") or {}).items()},
        tests=meta.get("tests") or {},
    )
    undeclared = rule.referenced_params - set(params) - set(BUILTIN_PARAMS)
    if undeclared:
        raise SegmentError(
            sql_path,
            f"uses undeclared parameter(s) {', '.join('$' + p for p in sorted(undeclared))} "
            f"(declare each under params: in {meta_path.name})",
        )
    if not rule.description:
        raise SegmentError(meta_path, "needs a description")
    return rule


def _one_statement(path: Path, text: str) -> str:
    """The rule's SELECT as it is run, inside ``SELECT * FROM (...)``: without its closing
    semicolons and the comments after them. Several statements are refused here; SQL that
    does not parse is left to the compile check, which says where."""
    try:
        count = len(duckdb.extract_statements(text))
    except duckdb.Error:
        count = 1
    if count > 1:
        raise SegmentError(path, f"holds {count} statements: a rule is one SELECT")
    return _without_closing_semicolons(text.strip()).rstrip()


def _without_closing_semicolons(sql: str) -> str:
    """The SQL up to the semicolons that close it (what follows them is comments only), read
    as DuckDB reads it: a ';', a quote or '--' in a string ('', E'', $$ $$), a quoted name or
    a comment (block comments nest) is theirs ("name <> '; -- '", "-- haven't visited")."""
    closing, at = None, 0
    while at < len(sql):
        skipped = _skipped(sql, at)
        if skipped is not None:
            at, is_code = skipped
            closing = None if is_code else closing  # a ';' before a string closes nothing
        elif sql[at] == ";":
            closing = at if closing is None else closing
            at += 1
        else:
            closing = None if not sql[at].isspace() else closing
            at += 1
    return sql if closing is None else sql[:closing]


_DOLLAR_QUOTE = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def _skipped(sql: str, at: int) -> tuple[int, bool] | None:
    """Where a string, a quoted name or a comment starting at ``at`` ends, and whether it is
    code (a string or a name) rather than a comment; None when none starts there."""
    if sql.startswith("--", at):  # to the line's end (read_text made every ending a LF)
        found = sql.find("\n", at)
        return (len(sql) if found < 0 else found + 1), False
    if sql.startswith("/*", at):
        depth, at = 1, at + 2
        while depth and at < len(sql):
            depth += sql.startswith("/*", at) - sql.startswith("*/", at)
            at += 2 if sql.startswith(("/*", "*/"), at) else 1
        return at, False
    dollar = _DOLLAR_QUOTE.match(sql, at) if sql[at] == "$" else None
    if dollar:
        found = sql.find(dollar.group(), dollar.end())
        return (len(sql) if found < 0 else found + len(dollar.group())), True
    if sql[at] in "'\"":
        # E'...' escapes with backslashes; a word ending in e before a quote (ELSE'\') is no E
        prefix = sql[max(at - 2, 0) : at]
        escaped = sql[at] == "'" and prefix[-1:] in ("e", "E") and not _word(prefix[:-1])
        return _quoted_end(sql, at, escaped), True
    return None


def _word(text: str) -> bool:
    return bool(text) and (text.isalnum() or text == "_")


def _quoted_end(sql: str, at: int, escaped: bool) -> int:
    quote, at = sql[at], at + 1
    while at < len(sql):
        if escaped and sql[at] == "\\":
            at += 2
        elif sql[at] == quote and sql.startswith(quote * 2, at):
            at += 2  # a doubled quote is one inside the string
        elif sql[at] == quote:
            return at + 1
        else:
            at += 1
    return at


def _text(path: Path) -> str:
    """A rule's SQL as text; one saved otherwise (GB18030, say) is named like the rest."""
    try:
        return read_text(path)
    except YamlFileError as exc:
        raise SegmentError(path, str(exc)) from None


def _param_spec(meta_path: Path, name: str, spec: object) -> ParamSpec:
    if name in BUILTIN_PARAMS:
        raise SegmentError(meta_path, f"parameter {name} is built in and cannot be declared")
    try:
        return ParamSpec.from_yaml(name, spec)
    except ParamError as exc:
        raise SegmentError(meta_path, str(exc)) from None


def load_rules(
    directory: Path = RULES_DIR, broken: dict[str, str] | None = None
) -> dict[str, SegmentRule]:
    """The folder's rules. Given ``broken``, a rule that cannot be used goes there (its name:
    its error) and the others load: a bad file the data team adds then stops only the
    campaigns that use it, not every campaign's daily run. Without it, it raises."""
    rules = {}
    for path in sorted(directory.glob("*.sql")):
        try:
            rules[path.stem] = load_rule(path)
        except SegmentError as exc:
            if broken is None:
                raise
            broken[path.stem] = str(exc)
    return rules


def check_rule(con: duckdb.DuckDBPyConnection, rule: SegmentRule) -> list[str]:
    """Compile the rule against the warehouse; return its output columns or raise SegmentError."""
    try:
        described = con.execute(
            f"DESCRIBE SELECT * FROM {rule.subquery}", rule.bind(date(2000, 1, 1))
        ).fetchall()
    except duckdb.Error as exc:
        raise SegmentError(rule.path, f"SQL does not compile: {_first_line(exc)}") from None
    columns = [str(row[0]) for row in described]
    if "subscriber_id" not in columns:
        raise SegmentError(rule.path, f"must return subscriber_id; returns {', '.join(columns)}")
    if len(set(columns)) != len(columns):
        raise SegmentError(rule.path, f"returns duplicate column names: {', '.join(columns)}")
    return columns


def materialize(
    con: duckdb.DuckDBPyConnection,
    rule: SegmentRule,
    as_of: date,
    table: str,
    overrides: dict[str, Any] | None = None,
) -> int:
    """Run the rule into TEMP table ``table`` and return its size; members must be unique."""
    params = rule.bind(as_of, overrides)
    columns = check_rule(con, rule)
    occasion = ", occasion" if "occasion" in columns else ""
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {rule.subquery}", params
        )
    except duckdb.Error as exc:
        reason = _first_line(exc).removeprefix("Invalid Input Error: ")
        raise SegmentError(rule.path, reason) from None
    _check_members(con, rule, table, occasion)
    size = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(size[0]) if size else 0


def _check_members(
    con: duckdb.DuckDBPyConnection, rule: SegmentRule, table: str, occasion: str
) -> None:
    duplicate = con.execute(
        f"SELECT subscriber_id{occasion}, count(*) FROM {table} "
        f"GROUP BY ALL HAVING count(*) > 1 LIMIT 1"
    ).fetchone()
    if duplicate:
        raise SegmentError(rule.path, f"member {duplicate[0]} appears {duplicate[-1]} times")
    nulls = con.execute(f"SELECT count(*) FROM {table} WHERE subscriber_id IS NULL").fetchone()
    if nulls and nulls[0]:
        raise SegmentError(rule.path, f"{nulls[0]} member(s) with a NULL subscriber_id")
    # A member is cared for once an occasion (the outbox's key names it): without one the
    # plan could neither key nor write the member, and dropped them unsaid.
    no_occasion = (
        con.execute(
            f"SELECT min(subscriber_id), count(*) FROM {table} WHERE occasion IS NULL "
            "HAVING count(*) > 0"
        ).fetchone()
        if occasion
        else None
    )
    if no_occasion:
        raise SegmentError(
            rule.path,
            f"member {no_occasion[0]} has a NULL occasion ({no_occasion[1]} member(s) in all)",
        )


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
