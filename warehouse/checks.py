"""Numbering plans and address syntax for a whole column at once, as the libraries decide them.

Calling ``phonenumbers`` or ``email_validator`` per row costs about 20 µs; a 10-million-row file
would spend minutes there. The libraries' answers depend on far less than the whole value, so
each is asked once per distinct deciding part and the answer joined back:

* a phone number's validity depends on its country code, its length and only as many leading
  digits of the national number as the country's patterns constrain (see ``decisive_digits``);
* an email address whose local part is a plain dot-atom is valid exactly when its domain is
  valid and the whole stays within 254 bytes (``email_validator``'s own rules for that form);
  anything else (quoted, unicode local parts, display names...) goes to the library whole.

Every answer is the library's own: ``valid_phone`` / ``valid_email`` on a representative
value. ``tests/test_checks.py`` compares both ways on broad samples.
"""

from __future__ import annotations

from functools import cache
from re import _constants as sre  # type: ignore[attr-defined]  # the parser's opcodes
from re import _parser as sre_parse  # type: ignore[attr-defined]  # no public regex parser
from typing import Any

import phonenumbers
import polars as pl
from email_validator import EmailNotValidError, validate_email
from phonenumbers import PhoneMetadata, PhoneNumberDesc

E164_DIGITS = r"^\+[1-9][0-9]{6,14}$"
UNBOUNDED = 1 << 30  # a pattern whose constrained part has no fixed end: key on every digit
MAX_CC_DIGITS = 3


def valid_phone(value: str | None) -> bool:
    """A real number in its country's numbering plan (the E.164 shape is GX's rule)."""
    if value is None:
        return True
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(value)))
    except phonenumbers.NumberParseException:
        return False


def valid_email(value: str | None) -> bool:
    if value is None:
        return True
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


# -- phone numbers -------------------------------------------------------------------------


def _depth(items: Any, before: int) -> tuple[int, int, int]:
    """(min length, max length, decisive depth) of a parsed regex: the depth is one past the
    furthest position any atom other than "any digit" can sit at, so digits at or beyond it
    never change whether the pattern matches a digit string of a given length."""
    low = high = deepest = 0
    for op, arg in items:
        start = before + high
        if op is sre.AT:
            continue
        if op is sre.SUBPATTERN:
            lo, hi, deep = _depth(arg[-1], start)
        elif op is sre.BRANCH:
            parts = [_depth(alternative, start) for alternative in arg[1]]
            lo, hi = min(p[0] for p in parts), max(p[1] for p in parts)
            deep = max(p[2] for p in parts)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            lo, hi, deep = _repeat_depth(arg, start)
        elif _any_digit(op, arg):
            lo = hi = 1
            deep = 0
        elif op in (sre.LITERAL, sre.NOT_LITERAL, sre.IN, sre.ANY):
            lo = hi = 1
            deep = start + 1
        else:  # lookarounds, back references: nothing to reason about, key on every digit
            lo, hi, deep = 0, UNBOUNDED, UNBOUNDED
        low, high, deepest = low + lo, min(high + hi, UNBOUNDED), max(deepest, deep)
    return low, high, deepest


def _repeat_depth(arg: Any, start: int) -> tuple[int, int, int]:
    least, most, sub = arg
    lo, hi, deep = _depth(sub, 0)
    bounded = most is not sre.MAXREPEAT
    high = min(most * hi, UNBOUNDED) if bounded else UNBOUNDED
    return least * lo, high, (min(start + high, UNBOUNDED) if deep else 0)


def _any_digit(op: Any, arg: Any) -> bool:
    return op is sre.IN and (
        arg == [(sre.CATEGORY, sre.CATEGORY_DIGIT)] or arg == [(sre.RANGE, (48, 57))]
    )


def pattern_depth(pattern: str | None) -> int:
    if not pattern:
        return 0
    return _depth(sre_parse.parse(pattern), 0)[2]


def _metadata(country_code: int) -> list[PhoneMetadata]:
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    found = [
        PhoneMetadata.metadata_for_nongeo_region(country_code)
        if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
        else PhoneMetadata.metadata_for_region(region)
        for region in regions
    ]
    return [m for m in found if m is not None]


@cache
def decisive_digits(country_code: int) -> tuple[int, int, str | None]:
    """How many leading national digits decide validity for the country code: without a
    national prefix at the start, and with one (parsing strips it, and the patterns then
    apply to the rest), and the prefix pattern itself (None if there is none).

    What ``is_valid_number(parse("+..."))`` reads: the national-prefix pattern (parsing strips
    a match), the leading-digits pattern that picks the region among those sharing the code,
    and each number type's pattern, matched whole; lengths are part of the key anyway."""
    plain, prefixes = 0, []
    for metadata in _metadata(country_code):
        patterns = [metadata.leading_digits]
        patterns += [
            desc.national_number_pattern
            for desc in vars(metadata).values()
            if isinstance(desc, PhoneNumberDesc)
        ]
        plain = max([plain, *(pattern_depth(p) for p in patterns)])
        if metadata.national_prefix_for_parsing:
            prefixes.append(metadata.national_prefix_for_parsing)
    prefix_depth = max((pattern_depth(p) for p in prefixes), default=0)
    either = "|".join(f"(?:{p})" for p in prefixes) or None
    return max(plain, prefix_depth), min(prefix_depth + plain, UNBOUNDED), either


def _country_code(digits: str) -> int | None:
    """The code ``phonenumbers.parse`` reads off "+digits": the first 1-3 digits that are one."""
    for size in range(1, MAX_CC_DIGITS + 1):
        if int(digits[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return int(digits[:size])
    return None


def _phone_keys(shaped: pl.DataFrame) -> pl.DataFrame:
    """For E.164-shaped numbers (``value``, ``digits``): the key deciding validity, per row."""
    heads = shaped.select(pl.col("digits").str.slice(0, MAX_CC_DIGITS).unique().alias("head"))
    codes = {h: _country_code(h) for h in heads["head"]}
    with_code = shaped.with_columns(
        pl.col("digits")
        .str.slice(0, MAX_CC_DIGITS)
        .replace_strict(codes, return_dtype=pl.Int32)
        .alias("cc")
    )
    parts = []
    for (code,), part in with_code.partition_by("cc", as_dict=True).items():
        parts.append(part.with_columns(_key(code)))
    return pl.concat(parts) if parts else shaped.with_columns(key=pl.lit(None, pl.String))


def _key(code: int | None) -> pl.Expr:
    """``code|leading digits|length`` for one country code's numbers."""
    if code is None:  # no such country code: parse refuses them all alike
        return pl.lit("none").alias("key")
    plain, stripped, prefix = decisive_digits(code)
    national = pl.col("digits").str.slice(len(str(code)))
    depth: pl.Expr = pl.lit(plain)
    if prefix is not None:
        depth = pl.when(national.str.contains(f"^(?:{prefix})")).then(stripped).otherwise(plain)
    return pl.concat_str(
        pl.lit(f"{code}|"), national.str.slice(0, depth), pl.lit("|"), national.str.len_bytes()
    ).alias("key")


def phone_validity(values: pl.Series, known: dict[str, bool] | None = None) -> pl.Series:
    """``valid_phone`` of every value (null stays null), asking phonenumbers once per key;
    ``known`` keeps the answers across calls (a load's chunks share most keys)."""
    known = {} if known is None else known
    frame = pl.DataFrame({"value": values.cast(pl.String)}).with_row_index("row")
    shaped = frame.filter(pl.col("value").str.contains(E164_DIGITS)).with_columns(
        digits=pl.col("value").str.slice(1)
    )
    keyed = _phone_keys(shaped)
    answers = keyed.group_by("key").agg(pl.col("value").first())
    for key, value in answers.iter_rows():
        if key not in known:
            known[key] = valid_phone(value)
    verdict = _answers("key", answers["key"], [known[k] for k in answers["key"]])
    decided = keyed.join(verdict, on="key").select("row", "ok")
    return _joined(frame, decided, valid_phone)


def _answers(name: str, keys: pl.Series, answers: list[bool]) -> pl.DataFrame:
    return pl.DataFrame({name: keys, "ok": answers}, schema={name: keys.dtype, "ok": pl.Boolean})


def _joined(frame: pl.DataFrame, decided: pl.DataFrame, test: Any) -> pl.Series:
    """Decided rows' answers in row order; the library itself for the other non-null values
    (rare: they also fail a GX pattern), once per distinct value."""
    rest = frame.join(decided, on="row", how="anti").filter(pl.col("value").is_not_null())
    distinct = rest["value"].unique()
    others = _answers("value", distinct, [test(v) for v in distinct])
    undecided = rest.join(others, on="value").select("row", "ok")
    joined = frame.join(pl.concat([decided, undecided]), on="row", how="left").sort("row")
    return joined["ok"]


# -- email addresses -----------------------------------------------------------------------

# email_validator's DOT_ATOM_TEXT (rfc_constants.py): such a local part is valid as it is.
ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
# Domains with no character that could change how the address is split (quotes, angle
# brackets, spaces, a second @): the library splits these at their only @.
PLAIN_ADDRESS = rf"^[{ATEXT}]+(?:\.[{ATEXT}]+)*@[^@\s\"<>()\[\]\\,;:]+$"
EMAIL_MAX_BYTES = 254  # email_validator's EMAIL_MAX_LENGTH, in UTF-8


def domain_room(domain: str) -> int | None:
    """None if email_validator refuses the domain; else the bytes it counts for the domain in
    its length check (the longest of the domain as given, normalised, and as IDNA ASCII)."""
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    forms = (domain, checked.domain, checked.ascii_domain)
    return max(len(form.encode()) for form in forms)


def _room(domain: str, known: dict[str, int | None]) -> int | None:
    if domain not in known:
        known[domain] = domain_room(domain)
    return known[domain]


def email_validity(values: pl.Series, known: dict[str, int | None] | None = None) -> pl.Series:
    """``valid_email`` of every value (null stays null), asking email_validator once per
    domain for plain addresses and once per distinct value for the rest; ``known`` keeps
    each domain's ``domain_room`` across calls."""
    known = {} if known is None else known
    frame = pl.DataFrame({"value": values.cast(pl.String)}).with_row_index("row")
    plain = frame.filter(pl.col("value").str.contains(PLAIN_ADDRESS)).with_columns(
        pl.col("value").str.split_exact("@", 1).struct.rename_fields(["local", "domain"])
    )
    plain = plain.unnest("value").with_columns(value=pl.concat_str("local", pl.lit("@"), "domain"))
    domains = plain["domain"].unique()
    rooms = pl.DataFrame(
        {"domain": domains, "room": [_room(d, known) for d in domains]},
        schema={"domain": pl.String, "room": pl.Int64},
    )
    room = pl.col("room")
    ok = room.is_not_null() & (pl.col("local").str.len_bytes() + 1 + room <= EMAIL_MAX_BYTES)
    decided = plain.join(rooms, on="domain").select("row", ok=ok)
    return _joined(frame, decided, valid_email)
