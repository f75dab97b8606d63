"""Understand a reply: a rating (1-5), an opt-out or opt-in keyword, a help request, or neither.

One model for every channel: SMS text, IVR digits and email ratings all become a ParsedReply.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Literal

Intent = Literal["rating", "opt_out", "opt_in", "help", "unknown"]

OPT_OUT = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "td", "t", "退订"}
OPT_IN = {"start", "yes", "unstop"}
HELP = {"help", "info", "帮助"}
# Longest phrases first, so 非常不满意 is not read as 不满意 or 满意.
RATING_WORDS: list[tuple[str, int]] = sorted(
    [
        ("非常不满意", 1),
        ("很不满意", 1),
        ("不满意", 2),
        ("非常满意", 5),
        ("很满意", 5),
        ("满意", 4),
        ("一般", 3),
        ("very dissatisfied", 1),
        ("very unsatisfied", 1),
        ("dissatisfied", 2),
        ("unsatisfied", 2),
        ("very satisfied", 5),
        ("satisfied", 4),
        ("neutral", 3),
    ],
    key=lambda pair: -len(pair[0]),
)
# Number words count only as the whole reply: "one day I will" is not a rating.
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_DIGIT = re.compile(r"^([1-5])(?![0-9])(?!\.[0-9])(分?)(.*)$", re.DOTALL)
_SEPARATORS = " \t\r\n,，.。:：;；!！、-—~～"


@dataclass(frozen=True)
class ParsedReply:
    intent: Intent
    score: int | None = None
    comment: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def normalize(text: str) -> str:
    """NFKC folds full-width digits and letters (１ -> 1, ＳＴＯＰ -> STOP)."""
    return unicodedata.normalize("NFKC", text).strip()


def parse_reply(text: str | None) -> ParsedReply:
    cleaned = normalize(text or "")
    keyword = cleaned.lower()
    if keyword in OPT_OUT:
        return ParsedReply("opt_out")
    if keyword in OPT_IN:
        return ParsedReply("opt_in")
    if keyword in HELP:
        return ParsedReply("help")
    rating = _rating(cleaned)
    if rating:
        return rating
    return ParsedReply("unknown", comment=cleaned or None)


def _rating(text: str) -> ParsedReply | None:
    match = _DIGIT.match(text)
    if match:
        unit, rest = match.group(2), match.group(3)
        if not unit and rest and rest[0] not in _SEPARATORS and rest[0].isascii():
            return None  # "3x" or "5star": not a clean rating
        return ParsedReply("rating", int(match.group(1)), _comment(rest))
    lowered = text.lower()
    word = lowered.rstrip(_SEPARATORS)
    if word in NUMBER_WORDS:
        return ParsedReply("rating", NUMBER_WORDS[word])
    for phrase, score in RATING_WORDS:
        if lowered.startswith(phrase):
            rest = text[len(phrase) :]
            if rest and phrase.isascii() and rest[0].isalnum():
                continue  # "fives", "one day": the word is part of something else
            return ParsedReply("rating", score, _comment(rest))
    return None


def _comment(rest: str) -> str | None:
    comment = rest.strip(_SEPARATORS)
    return comment or None


def parse_digits(digits: str | None) -> ParsedReply:
    """An IVR keypress: 1-5 is a rating; no input or another key is no answer."""
    key = (digits or "").strip()
    if len(key) == 1 and key in "12345":
        return ParsedReply("rating", int(key))
    return ParsedReply("unknown", comment=None)
