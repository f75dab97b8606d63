"""Understand a reply: a rating (1-5), an opt-out or opt-in, a help request, or neither.

One model for every channel: SMS text, IVR digits and email ratings all become a ParsedReply.

Opt-outs are read as people write them. Since 2025-04-11 the US FCC treats a reply using stop,
quit, end, revoke, opt out, cancel or unsubscribe as a revocation, and any plain request to stop
("please stop texting me") on the totality of the circumstances; China's rules require that
退订 and TD work. Missing one costs a fine and a customer's trust; reading one too many costs a
confirmation the customer can answer with START. So an opt-out wins over a rating given beside
it ("1 stop": both kept), and a reply is an opt-out when it is
- one of the keywords, once punctuation, politeness words and a rating are set aside;
- or uses a word that only ever means "stop contacting me" (stop, unsubscribe, revoke, opt
  out, 退订, 取消订阅), anywhere;
- or uses end, cancel or quit about our messages ("cancel my subscription", "end these
  texts"): those words are common in comments about the service ("had to cancel my order",
  "the end of the queue"), so inside a sentence they count only with such an object;
- or is a plain request to stop ("don't text me again", "no more messages", "别再发了").
Words are whole words: "I stopped at the store 4", "endless queue 2" and "停车不方便 3" are
ratings.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Literal

from core.ivr import OPT_OUT_KEY, RATING_KEYS

Intent = Literal["rating", "opt_out", "opt_in", "help", "unknown"]

# A reply that is only one of these (punctuation, politeness words and a rating aside).
OPT_OUT = {
    "stop",
    "stopall",
    "stop all",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "revoke",
    "opt out",
    "optout",
    "td",
    "t",
    "退订",
    "取消订阅",
    "取消",
    "停止",
    "停",
    "退",
    "стоп",  # the same request from customers who write in other languages
    "arret",
    "basta",
    "alto",
}
OPT_IN = {"start", "yes", "unstop"}
HELP = {"help", "info", "帮助"}
# Words that mean "stop contacting me" wherever they stand.
OPT_OUT_WORDS = {"stop", "stopall", "unsubscribe", "unsub", "revoke", "optout"}
OPT_OUT_CHINESE = ("退订", "取消订阅", "停止发送", "停止推送", "拒收", "勿扰", "拉黑")
# Words that say so only when they are about our messages (see the module's note).
OPT_OUT_WHEN_ABOUT_US = {"end", "cancel", "quit"}
ABOUT_US = {
    "me",
    "text",
    "texts",
    "texting",
    "txt",
    "txts",
    "message",
    "messages",
    "messaging",
    "sms",
    "call",
    "calls",
    "calling",
    "survey",
    "surveys",
    "subscription",
    "sending",
    "contact",
    "contacting",
    "alerts",
    "notifications",
}
# Plain requests to stop that use none of the words above, in English and in Chinese.
PLEASE_STOP_EN = re.compile(
    r"\b(?:do\s*n[o']?t|never)\s+(?:ever\s+)?(?:text|txt|message|sms|call|contact|email|bother)"
    r"\w*\s+(?:me|us)\b"
    r"|\bno\s+more\s+(?:texts?|txts?|messages?|sms|calls?|surveys?|emails?)\b"
    r"|\b(?:remove|delete|take)\s+me\s+(?:off|from)\b|\bremove\s+me\b"
    r"|\bleave\s+me\s+alone\b"
    r"|\bopt\s+me\s+out\b"
)
PLEASE_STOP_ZH = re.compile(
    r"(?:不要|别|勿|不用)再(?:给我)?(?:发|打|联系|骚扰)"
    r"|(?:不要|别|勿)(?:给我)?(?:发|打)(?:短信|消息|信息|电话|了|啦)"
    r"|(?:不要|别|请勿|勿)(?:再)?(?:打扰|骚扰)"
)
# Each Chinese request above starts with one of these: most replies have none, and skip it.
_PLEASE_STOP_ZH_START = ("不要", "别", "勿", "不用")
_LATIN_WORD = re.compile(r"[a-z]+")
# Letters that look Latin in other scripts, as a forwarded or disguised "Ѕtор" or "SТОР" has
# them; read as Latin only inside a word that has a Latin letter too (so стоп stays Russian).
_LOOK_ALIKES = str.maketrans(
    "АВЕЅІЈКМНОРСТХУаеѕіјкорсхуΑΒΕΗΙΚΜΝΟΡΤΧΥΖοτ",
    "ABESIJKMHOPCTXYaesijkopcxyABEHIKMNOPTXYZot",
)
_MIXED_WORD = re.compile(
    r"\w*[A-Za-z]\w*[АВЕЅІЈКМНОРСТХУаеѕіјкорсхуΑΒΕΗΙΚΜΝΟΡΤΧΥΖοτ]\w*"
    r"|\w*[АВЕЅІЈКМНОРСТХУаеѕіјкорсхуΑΒΕΗΙΚΜΝΟΡΤΧΥΖοτ]\w*[A-Za-z]\w*"
)
# Three or more single letters spelled out with spaces, dots or dashes: "S T O P".
_SPELLED = re.compile(r"(?<![A-Za-z])(?:[A-Za-z][\s.\-_*]+){2,}[A-Za-z](?![A-Za-z])")
# A bare rating, by far the commonest reply: nothing else to look for.
_BARE_DIGIT = re.compile(r"[1-5]分?")
# Set aside when deciding whether a reply is just a keyword: "stop please", "TD 谢谢".
POLITE = {
    "please",
    "pls",
    "plz",
    "now",
    "thanks",
    "thank",
    "you",
    "thx",
    "ok",
    "okay",
    "请",
    "谢谢",
}
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
# What a leading number counts when it is not the rating: a time, a date, a wait, a store
# or a floor. Only what cannot begin a word of a comment ("1月租太贵" is a 1 on the monthly
# fee, "5点赞" a 5 and a like, "1人工客服太差" a 1): the unit with what follows it.
_COUNTED_ZH = re.compile(
    r"^(?:[点:：][0-9]|点(?:钟|半|多|才|就|到|前|后|以|左右|了|开门|关门)"
    r"|月[0-9]|月份|月初|月底|号[0-9店窗柜台桌线]|楼(?![下上层道梯])|层(?!层)"
    r"|个(?:月|小时|钟|多|星期|人(?!觉得|感觉|认为|意见|建议|体验|看法))|[人位](?![工员家性])|小时|分钟|钟头|(?:星期|礼拜)(?:没|都|了|才|内|后|前)"
    r"|天(?:没|都|了|才|内|后|前|还)|次(?:都|了|没|才|还)|年(?:没|了|都|的|多|前)"
    r"|块钱|元(?!旦)|GB|G流量|M流量)"
)  # glued to the number: after a space, a comment may begin with any word ("1 元旦排队好久")
COUNTED_EN = {
    "hour", "hours", "hr", "hrs", "minute", "minutes", "min", "mins", "day", "days", "week",
    "weeks", "wk", "wks", "month", "months", "year", "years", "yr", "yrs", "sec", "secs",
    "seconds", "pm", "gb", "mb", "jan", "january", "feb", "february", "march", "apr", "april",
    "jun", "june", "jul", "july", "aug", "august", "sep", "sept", "september", "oct",
    "october", "nov", "november", "dec", "december",
}  # fmt: skip
# What "2 out of 5 ..." counts when it is not the rating ("2 out of 5 staff were working");
# any other word after it is the comment ("1 out of 5 terrible service", "4 out of 5 挺好的").
_COUNTED_NOUNS = (
    r"(?:staff|people|persons|tellers?|counters?|windows?|desks?|employees?|workers?|agents?"
    r"|clerks?|customers?|machines?|stores?|shops?|branches|lines?|seats?|of\b|个|人|位|台)"
)
# After a leading number: a date going on ("3-15", "2/3"; "4-5" is a rating of 4), "p.m.",
# "o'clock", or a named scale's noun ("2 out of 5 staff": _OUT_OF_FIVE did not take it).
_COUNTED_AFTER = re.compile(
    rf"^(?:[/.][0-9]|-[0-9]{{2}}|\s*(?:[ap]\.\s?m\.|o'clock)|\s*out\s+of\s+5\s+{_COUNTED_NOUNS})",
    re.IGNORECASE,
)
# A number glued to the end of a Chinese place, not a rating: "窗口2", "柜台3" ("VIP窗口 5"
# and "rude staff at the counter 1" end with their rating).
_PLACE_BEFORE = re.compile(r"(?:窗口|柜台|取号|工号)$")
# Number words count only as the whole reply: "one day I will" is not a rating.
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_DIGIT = re.compile(r"^([1-5])(?![0-9])(?!\.[0-9])(分?)(.*)$", re.DOTALL)
# A rating after a comment: "停车不方便 3", "I stopped at the store 4", "一般 2 分". The digit
# stands alone (not "waited 45", "version 2.5", "A4").
_TRAILING_DIGIT = re.compile(
    r"^(.*?[^\d\s])[\s,，.。:：;；!！、~～-]*(?<![A-Za-z0-9./$¥#×])(?<!\+(?=1))([1-5])\s*分?[\s.。!！]*$"
)
# The five-point scale named: its 5 is not the rating. "Honestly 1 out of 5", "2 out of 5
# stars, rude" anywhere, but not "2 out of 5 staff were working" (a count); "4/5" only as the
# whole reply ("came on 3/5" is a date); "满分5分" set aside when another digit is the rating.
_OUT_OF_FIVE = re.compile(
    rf"(?<![0-9.])([1-5])\s*out\s+of\s+5(?:\s*stars?)?(?!\.?[0-9])(?!\s+{_COUNTED_NOUNS})",
    re.IGNORECASE,
)
_SLASH_FIVE = re.compile(r"([1-5])\s*/\s*5\s*分?[\s.。!！]*")
_FULL_MARKS = re.compile(r"[(（]?\s*满分\s*5\s*分?\s*[)）]?")
# A digit right after a rating word: the digit they chose ("一般 2", "满意度5", "不满意…1").
_AFTER_WORD = re.compile(
    r"^度?[\s,，.。:：;；!！、~～…-]*([1-5])(?![0-9.])\s*分?[\s.。!！吧啊呀哦]*$"
)
_SEPARATORS = " \t\r\n,，.。:：;；!！、-—~～"
# A verdict inside a reply that gave no digit and began with no rating word: "我不满意",
# "对这次服务不满意", "不太满意，排队太久", "服务太差了", "给个差评", "I'm not satisfied". At a
# place, the first of these that fits is the verdict (the negated and the stronger forms come
# before the plain word they contain).
_VERDICTS: list[tuple[str, int]] = [
    (r"(?:非常|很|特别|十分|极其|太|超级?)不满意", 1),
    (r"(?:不|没有?)(?:太|大|是很|是太|是特别|是非常|是那么|怎么|够|算|那么|很|十分)?满意", 2),
    (r"(?:非常|很|特别|十分|超级?|太|相当)满意", 5),
    (r"满意(?!度)", 4),  # 满意度: the satisfaction they rate, not a verdict
    (r"一般般?(?=$|[\s,，.。!！;；~～吧啊呀哦了])", 3),  # not 一般来说, 我一般下午去
    (r"(?:很|太|非常|特别|极|真|好|超)差|差劲|差评", 1),
    (r"中评", 3),
    (r"好评", 5),
    (r"\b(?:very|extremely|totally|completely|really|so|highly|super)\s+(?:dis|un)satisfied\b", 1),
    (
        r"(?:\bnot|\bnever|n[’']t)\s+(?:(?:very|really|too|that|so|at\s+all|entirely|fully"
        r"|completely|quite)\s+)?(?:satisfied|happy)\b",
        2,
    ),
    (r"\b(?:dis|un)satisfied\b|\bunhappy\b", 2),
    (r"\b(?:very|extremely|totally|completely|really|so|highly|super)\s+satisfied\b", 5),
    (r"\bsatisfied\b", 4),
    (r"\bneutral\b", 3),
]
_VERDICT = re.compile("|".join(f"(?P<v{i}>{pattern})" for i, (pattern, _) in enumerate(_VERDICTS)))
# A clause that asks or wishes gives no verdict: "满意吗？", "如果快一点会很满意", "would be
# satisfied if"; the clause ends at a comma, a full stop, a question or exclamation mark.
_CLAUSE = re.compile(r"[^,，.。!！;；?？]+[?？]?")
_ASKS_OR_WISHES = re.compile(r"[?？吗]|如果|要是|假如|希望|但愿|\b(?:if|would|could|hope|wish)\b")
# A score written with a unit or in signs, as one digit with 分 for the rules below:
# "五星好评", "给个五星", "两分", "三颗星", "1星差评", "★★★☆☆", "⭐⭐⭐", "one star", "2 stars".
# 0 and 零 are below the scale, its lowest ("0分", "zero stars"). Only when nothing glued on
# makes it something else: "五分钟", "一分钱", "三分之一", "一星期", "三星手机" (Samsung), "十五分".
_SCORES = {"0": 1, "零": 1, "zero": 1, "一": 1, "one": 1, "二": 2, "两": 2, "two": 2}
_SCORES |= {"三": 3, "three": 3, "四": 4, "four": 4, "五": 5, "five": 5}
_SCORES |= {str(n): n for n in range(1, 6)}
_SCORE_ZH = re.compile(
    r"(?<![0-9一二两三四五六七八九十百千万零第几])([0-5]|[零一二两三四五])\s*[个颗]?\s*([星分])"
    r"(?=$|[\s,，.。!！;；~～、…吧啊呀哦了都也好差不给满非很])"
)
_SCORE_EN = re.compile(r"\b(zero|one|two|three|four|five|[0-5])\s*stars?\b", re.IGNORECASE)
_STAR_SIGNS = re.compile(r"([★⭐🌟]\ufe0f?){1,5}(?:[☆✩]\ufe0f?)*")
# Zero-width characters that NFKC keeps: a pasted or forwarded "\u200bSTOP" is still STOP.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[^\W\d_a-z]+")


@dataclass(frozen=True)
class ParsedReply:
    intent: Intent
    score: int | None = None
    comment: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def normalize(text: str) -> str:
    """NFKC folds full-width digits and letters (１ -> 1, ＳＴＯＰ -> STOP) and non-breaking
    spaces; zero-width characters go, and runs of whitespace become one space."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(_INVISIBLE).split())


def parse_reply(text: str | None) -> ParsedReply:
    cleaned = normalize(text or "")
    if _BARE_DIGIT.fullmatch(cleaned):
        return ParsedReply("rating", int(cleaned[0]))
    rating = _rating(cleaned)
    rest = (rating.comment or "") if rating else cleaned  # "1 stop": is the rest a keyword?
    bare = _bare(_disguised(rest))
    if bare in OPT_OUT or _asks_to_stop(_disguised(cleaned).lower()):
        comment = None if bare in OPT_OUT else (rating.comment if rating else cleaned)
        return ParsedReply("opt_out", rating.score if rating else None, comment)
    if rating:
        return rating
    if bare in OPT_IN:
        return ParsedReply("opt_in")
    if bare in HELP:
        return ParsedReply("help")
    return ParsedReply("unknown", comment=cleaned or None)


def _disguised(text: str) -> str:
    """The text as it reads, for finding a request to stop: accents and strike-throughs
    dropped, look-alike Cyrillic and Greek letters in a Latin word read as Latin ("Ѕtор"),
    spelled-out letters joined ("S T O P", "s.t.o.p") and the stop sign read as the word."""
    bare = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    bare = _SPELLED.sub(lambda m: re.sub(r"[\s.\-_*]", "", m.group()), bare.replace("🛑", " stop "))
    return _MIXED_WORD.sub(lambda m: m.group().translate(_LOOK_ALIKES), bare)


def _bare(text: str) -> str:
    """The reply's words, lower case, without punctuation or politeness: "Stop, please!" is
    "stop"; "回复TD退订" keeps its words."""
    words = [w for w in _WORD.findall(text.lower()) if w not in POLITE]
    return " ".join(w.removeprefix("请") or w for w in words)


def _asks_to_stop(lowered: str) -> bool:
    if not lowered.isascii():
        if any(phrase in lowered for phrase in OPT_OUT_CHINESE):
            return True
        if any(start in lowered for start in _PLEASE_STOP_ZH_START) and PLEASE_STOP_ZH.search(
            lowered
        ):
            return True
        lowered = lowered.replace("\u2019", "'")  # a phone's curly apostrophe: "don’t"
    words = _LATIN_WORD.findall(lowered.replace("opt-out", "optout").replace("opt out", "optout"))
    if not words:
        return False
    if not OPT_OUT_WORDS.isdisjoint(words):
        return True
    if not OPT_OUT_WHEN_ABOUT_US.isdisjoint(words):
        for at, word in enumerate(words):
            if word in OPT_OUT_WHEN_ABOUT_US and ABOUT_US.intersection(words[at + 1 : at + 3]):
                return True
    return PLEASE_STOP_EN.search(lowered) is not None


def _rating(text: str) -> ParsedReply | None:
    text = normalize(_scores_as_digits(text))
    scaled = list(_OUT_OF_FIVE.finditer(text))
    if scaled:
        last = scaled[-1]
        rest = f"{text[: last.start()].rstrip()} {text[last.end() :].lstrip()}"
        return ParsedReply("rating", int(last.group(1)), _comment(rest))
    slashed = _SLASH_FIVE.fullmatch(text)
    if slashed:
        return ParsedReply("rating", int(slashed.group(1)))
    text = _without_full_marks(text)
    match = _DIGIT.match(text)
    if match and _leading_rating(match.group(2), match.group(3)):
        return ParsedReply("rating", int(match.group(1)), _comment(match.group(3)))
    lowered = text.lower()
    word = lowered.rstrip(_SEPARATORS)
    if word in NUMBER_WORDS:
        return ParsedReply("rating", NUMBER_WORDS[word])
    for phrase, score in RATING_WORDS:
        if lowered.startswith(phrase):
            rest = text[len(phrase) :]
            if rest and phrase.isascii() and rest[0].isalnum():
                continue  # "fives", "one day": the word is part of something else
            chosen = _AFTER_WORD.match(rest)  # the digit they chose, right after the word
            if chosen:
                return ParsedReply("rating", int(chosen.group(1)), _comment(text[: len(phrase)]))
            if _no_verdict_after(phrase, lowered):
                break  # "满意度很低", "一般来说", "满意吗？": perhaps a verdict further on
            return ParsedReply("rating", score, _comment(rest))
    trailing = _TRAILING_DIGIT.match(text)
    if trailing and not _PLACE_BEFORE.search(text[: trailing.start(2)]):
        return ParsedReply("rating", int(trailing.group(2)), _comment(trailing.group(1)))
    verdict = _verdict(lowered)
    return None if verdict is None else ParsedReply("rating", verdict, _comment(text))


def _scores_as_digits(text: str) -> str:
    """The reply with its scores written in words or signs as digits (see _SCORE_ZH)."""
    text = _STAR_SIGNS.sub(lambda m: f" {len(re.findall('[★⭐🌟]', m.group()))}分 ", text)
    text = _SCORE_EN.sub(lambda m: str(_SCORES[m.group(1).lower()]), text)
    return _SCORE_ZH.sub(_chinese_score, text)


def _chinese_score(found: re.Match[str]) -> str:
    numeral, unit = found.groups()
    if numeral == "零" and unit == "星":
        return found.group()  # 零星: scattered, not zero stars
    return f"{_SCORES[numeral]}分"


def _no_verdict_after(phrase: str, lowered: str) -> bool:
    """Whether a reply that begins with the rating word ``phrase`` and gives no digit after it
    still says no verdict with it: the word goes on as another (满意度, 一般来说), or its clause
    asks or wishes (满意吗？), as _VERDICTS reads a verdict inside a reply."""
    found = _VERDICT.match(lowered)
    if found is None or found.end() < len(phrase):
        return True
    clause = _CLAUSE.match(lowered)
    return clause is None or _ASKS_OR_WISHES.search(clause.group()) is not None


def _verdict(lowered: str) -> int | None:
    """The score of the verdicts said inside a reply (see _VERDICTS), when they agree: all on
    the low side (3 or less) the lowest, all on the high side the highest; none, or both
    sides ("服务满意，价格不满意"), is no verdict."""
    scores = [
        _VERDICTS[int(found.lastgroup[1:])][1]
        for clause in _CLAUSE.findall(lowered)
        if not _ASKS_OR_WISHES.search(clause)
        for found in _VERDICT.finditer(clause)
        if found.lastgroup
    ]
    if not scores:
        return None
    if max(scores) <= 3:
        return min(scores)
    return max(scores) if min(scores) >= 3 else None


def _without_full_marks(text: str) -> str:
    """The reply without its "满分5分" (full marks: 5) when another digit is left to be the
    rating ("给2分，满分5分"); else as it is ("服务很好，满分5分" gives the 5)."""
    if "满分" not in text:
        return text
    left = _FULL_MARKS.sub(" ", text).strip(_SEPARATORS)
    return left if re.search(r"(?<![0-9])[1-5](?![0-9])", left) else text


def _leading_rating(unit: str, rest: str) -> bool:
    """Whether a leading digit, its 分 and what follows are a rating and its comment: not
    "3x", "5star", "4/5 visit" (the rest glued on in ASCII), nor a count (_counts_something).
    When not, the reply may still end with its rating ("4/5 visit, staff rude 2")."""
    glued = not unit and rest and rest[0] not in _SEPARATORS and rest[0].isascii()
    return not glued and not _counts_something(unit, rest)


def _counts_something(unit: str, rest: str) -> bool:
    """Whether a leading digit counts something other than the rating: a time, a date, a
    store, a floor, a wait ("5点才开门", "2月3日", "3号店", "1楼", "2 hours wait", "5分钟").
    The rating may then come at the end ("3号店排队太久 1")."""
    if unit:  # 分: points, unless it is 分钟, minutes
        return rest.startswith("钟")
    word = re.match(r"\s+([a-z]+)\b", rest.lower())  # the word right after the number
    return (
        _COUNTED_ZH.match(rest) is not None
        or (word is not None and word.group(1) in COUNTED_EN)
        or _COUNTED_AFTER.match(rest) is not None
    )


def _comment(rest: str) -> str | None:
    comment = rest.strip(_SEPARATORS)
    return comment or None


def parse_digits(digits: str | None) -> ParsedReply:
    """An IVR keypress: 1-5 is a rating, the opt-out key opts out (of calls and texts: one
    phone, one consent); no input or another key is no answer."""
    key = (digits or "").strip()
    if len(key) == 1 and key in RATING_KEYS:
        return ParsedReply("rating", int(key))
    if key == OPT_OUT_KEY:
        return ParsedReply("opt_out")
    return ParsedReply("unknown", comment=None)
