"""The set-based phone and email checks give the libraries' own answer for every value."""

import itertools
import random

import phonenumbers
import polars as pl
import pytest

from warehouse.checks import (
    decisive_digits,
    email_validity,
    pattern_depth,
    phone_validity,
    valid_email,
    valid_phone,
)


@pytest.mark.parametrize(
    ("pattern", "depth"),
    [
        (r"\d{7}", 0),
        (r"1\d{6}", 1),
        (r"(?:1[38]|2)\d{5,7}", 2),
        (r"1(?:3\d|4[57])\d{8}", 3),
        (r"(?:1\d{2})?5\d{4}", 4),  # the 5 sits at position 0 or 3
        (r"[2-9]\d+", 1),
        (r"(?:1\d)+", 1 << 30),  # a constraint that repeats without end: every digit counts
    ],
)
def test_pattern_depth_is_where_the_last_constraint_can_sit(pattern, depth):
    assert pattern_depth(pattern) == depth


def _variants(national: str, rng: random.Random) -> list[str]:
    """Numbers near a real one: other endings, one digit changed, one digit more or less."""
    out = [national, national[:-1], national + str(rng.randrange(10))]
    for _ in range(4):
        cut = rng.randrange(1, len(national) + 1)
        out.append(national[:cut] + "".join(rng.choices("0123456789", k=len(national) - cut)))
        at = rng.randrange(len(national))
        out.append(national[:at] + str(rng.randrange(10)) + national[at + 1 :])
    return out


def phone_sample() -> list[str | None]:
    """Every region's example numbers of every type, numbers near them, numbers behind a
    national prefix, random digit strings, and values that are not E.164 at all."""
    rng = random.Random(20)
    numbers: list[str | None] = [None, "", "+", "8613812345678", "+86 138", "+0123456789"]
    for region in [*sorted(phonenumbers.SUPPORTED_REGIONS), "001"]:
        for kind in range(12):
            if region == "001":
                example = phonenumbers.example_number_for_non_geo_entity(800 + kind * 10)
            else:
                example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            code, national = (
                str(example.country_code),
                phonenumbers.national_significant_number(example),
            )
            for variant in _variants(national, rng) + _variants("0" + national, rng):
                numbers.append(f"+{code}{variant}")
    for _ in range(5000):
        numbers.append(
            "+" + str(rng.randrange(1, 10)) + str(rng.randrange(10**13))[: rng.randrange(6, 14)]
        )
    return numbers


def test_phone_validity_is_phonenumbers_for_every_number():
    sample = phone_sample()
    assert len(sample) > 20_000
    expected = [None if v is None else valid_phone(v) for v in sample]
    got = phone_validity(pl.Series(sample, dtype=pl.String)).to_list()
    assert sum(bool(e) for e in expected) > 2_000  # a broad sample: many valid, many not
    wrong = [(v, e, g) for v, e, g in zip(sample, expected, got, strict=True) if e != g]
    assert wrong == []


def test_each_country_code_has_a_decisive_depth():
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        plain, stripped, _ = decisive_digits(code)
        assert 0 <= plain <= stripped
    assert decisive_digits(86)[0] < 11  # China's mobiles share answers: the cache helps


LOCALS = [
    "li.wei",
    "a",
    "chen+promo",
    "o'brien",
    "x_y-z",
    "a.b.c",
    ".lead",
    "trail.",
    "dou..ble",
    '"john doe"',
    '"quoted"',
    '"a\\"b"',
    "用户",
    "ñoño",
    "üser.name",
    "e\u0301",  # decomposed: NFC changes it
    "a" * 64,
    "a" * 65,
    "b" * 200,
    "",
    "sp ace",
    "semi;colon",
    "paren(s)",
    "post#1",
    "{curly}",
    "Admin",
    "POSTMASTER",
]
DOMAINS = [
    "example.com",
    "EXAMPLE.COM",
    "mail.example.org",
    "qq.com",
    "bücher.de",
    "xn--bcher-kva.de",
    "例子.中国",
    "münchen.example",
    "localhost",
    "a..b.com",
    "-a.com",
    "a-.com",
    "com",
    "[1.2.3.4]",
    "exa mple.com",
    "ex_ample.com",
    "l" * 63 + ".com",
    "l" * 64 + ".com",
    ".".join(["d" * 60] * 4) + ".com",
    ".".join(["d" * 50] * 4) + ".com",
    "test",
    "invalid.test",
    "example.invalid",
    "123.com",
    "a.b.c.d.e.f",
    "xn--zz.com",
    "example.com.",
    "εxample.com",
    "ｅxample.com",  # full-width: normalises
    "ex\u200bample.com",
]
ODD = [
    "a@b@c.com",
    "<a@example.com>",
    "Li Wei <li@example.com>",
    "a @example.com",
    "@example.com",
    "li@",
    "li",
    "li@@example.com",
    '"a@b"@example.com',
    "li@example.com>",
    "li@exa<mple.com",
]


def test_email_validity_is_email_validator_for_every_address():
    sample: list[str | None] = [None, *ODD]
    sample += [f"{local}@{domain}" for local, domain in itertools.product(LOCALS, DOMAINS)]
    rng = random.Random(20)
    for _ in range(2000):  # random mixes of the pieces
        local = ".".join(rng.sample(["li", "wei", "x+y", "ü", "a_b", "9"], rng.randrange(1, 4)))
        sample.append(f"{local}{rng.choice(['', '.', '..'])}@{rng.choice(DOMAINS)}")
    assert len(sample) > 2_500
    expected = [None if v is None else valid_email(v) for v in sample]
    got = email_validity(pl.Series(sample, dtype=pl.String)).to_list()
    assert 300 < sum(bool(e) for e in expected) < len(sample) - 300
    wrong = [(v, e, g) for v, e, g in zip(sample, expected, got, strict=True) if e != g]
    assert wrong == []
