"""Hot topics: what this month's dissatisfied customers write about, against last month.

Comments are read in Chinese (jieba's word segmentation) and English. Known topics come from
``insights/topics.yaml`` (words in both languages, so "排队太久了" and "waited 40 minutes" are
one topic); comments about none of them are grouped by the words they share, so a new
problem ("APP闪退") surfaces as a topic of its own. A topic is hot when its share of the
comments rose significantly and its count at least doubled.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from core.clock import stored_range
from core.errors import UserError
from core.yaml_files import YamlFileError, read_yaml
from feedback.parsing import normalize
from insights.kpis import month_start, shift_month
from insights.stats import Moments, compare, shown_p
from warehouse.db import query_frame

TOPICS_PATH = Path(__file__).with_name("topics.yaml")
MIN_COUNT = 8  # a topic needs this many comments this month to be hot, or to be discovered
HOT_RATIO = 2.0
EXAMPLES = 3
ENGLISH_WORD = re.compile(r"[a-z][a-z0-9']+|[0-9]+g\b")
CJK = re.compile(r"[\u4e00-\u9fff]")
# Words that say nothing about the topic (English, then Chinese).
STOP_TEXT = """
the a an and or but is was were are be been to of in on at for with my me i it this that so too
very not no have has had do did does you your they them we our us just again still all from
about after before than then there here when what who why how can could would minutes minute
hours hour times time
了 的 很 太 是 我 都 也 还 就 在 有 没 不 又 才 吗 呢 啊 吧 真 非常 一直 老是 总是 三次 一次 两次
你们 他们 我们 这个 那个 什么 怎么 没有
"""
STOPWORDS = frozenset(STOP_TEXT.split())
COMMENTS_SQL = """
SELECT strftime(timezone($zone, e.received_at), '%Y-%m') AS month, e.store_id, e.comment
FROM evaluations e
WHERE e.intent = 'rating' AND e.score <= 2 AND nullif(trim(e.comment), '') IS NOT NULL
  AND timezone($zone, e.received_at) >= $first AND timezone($zone, e.received_at) < $end
  AND e.received_at >= $lo AND e.received_at < $hi
ORDER BY e.received_at, e.evaluation_id  -- the examples, whatever order the rows are stored in
"""


@dataclass(frozen=True)
class KnownTopic:
    name: str
    label: dict[str, str]
    words: tuple[str, ...]

    def matches(self, text: str, tokens: set[str]) -> bool:
        lowered = text.lower()
        return any(w in lowered if CJK.search(w) else w in tokens for w in self.words)


@dataclass
class Topic:
    name: str
    label: str
    known: bool
    count: int = 0
    previous: int = 0
    examples: list[str] = field(default_factory=list)
    stores: Counter[str] = field(default_factory=Counter)
    hot: bool = False
    share: float = 0.0
    previous_share: float = 0.0
    p_value: float | None = None

    @property
    def change(self) -> float | None:
        return (self.count - self.previous) / self.previous if self.previous else None

    def as_json(self) -> dict[str, Any]:
        stores = [{"store_id": s, "count": n} for s, n in self.top_stores()]
        return {
            "topic": self.name, "label": self.label, "known": self.known, "count": self.count,
            "previous": self.previous, "change": _rounded(self.change, 4),
            "share": round(self.share, 4), "previous_share": round(self.previous_share, 4),
            "hot": self.hot, "p_value": shown_p(self.p_value), "examples": self.examples,
            "stores": stores,
        }  # fmt: skip

    def top_stores(self) -> list[tuple[str, int]]:
        """Where the topic's comments come from, most first (ties by store id)."""
        return _most_common(self.stores, 3)


def _most_common(counts: Counter[str], n: int) -> list[tuple[str, int]]:
    """``Counter.most_common``, with ties by the key: a report shown again reads the same
    (the counts' insertion order is the rows' stored order, or a set's)."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@cache
def known_topics(path: Path = TOPICS_PATH) -> tuple[KnownTopic, ...]:
    try:
        raw = read_yaml(path) or {}
    except YamlFileError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return tuple(_known_topic(path, name, spec) for name, spec in raw.items())


def _known_topic(path: Path, name: str, spec: Any) -> KnownTopic:
    try:
        label, words = dict(spec["label"]), [str(w).lower() for w in spec["words"]]
    except (KeyError, TypeError, ValueError):
        raise UserError(
            f"{path}: topic {name}: needs label: {{en: ..., zh-CN: ...}} and words: [...]"
        ) from None
    return KnownTopic(name, label, tuple(words))


@cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)  # else it announces its dictionary on stderr
    return jieba


def tokens(text: str) -> list[str]:
    """Content words of a comment: jieba's words for Chinese, whole words for English."""
    lowered = text.lower()
    words = [w.strip().lower() for w in _jieba().lcut(lowered) if CJK.search(w)]
    words += ENGLISH_WORD.findall(lowered)
    return [w for w in words if w not in STOPWORDS and len(w) > 1]


def label_topics(
    comments: list[str], locale: str = "en"
) -> tuple[list[list[str]], dict[str, Topic]]:
    """Each comment's topics, and the topics: the known ones, then those discovered among the
    comments no known topic covers (grouped greedily by their most shared word)."""
    catalog = known_topics()
    topics = {t.name: Topic(t.name, t.label.get(locale, t.name), True) for t in catalog}
    # Each distinct comment read once: customers often write the same few words. Read folded,
    # as the parser reads replies: comments are kept as written (排隊 is 排队, ｗａｉｔ wait).
    folded = {c: normalize(c) for c in set(comments)}
    words = {c: set(tokens(f)) for c, f in folded.items()}
    known = {c: [t.name for t in catalog if t.matches(folded[c], s)] for c, s in words.items()}
    token_sets = [words[c] for c in comments]
    assigned = [list(known[c]) for c in comments]
    rest = [i for i, names in enumerate(assigned) if not names]
    while rest:
        counts = Counter(w for i in rest for w in token_sets[i])
        if not counts:
            break
        word, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if n < MIN_COUNT:
            break
        members = [i for i in rest if word in token_sets[i]]
        companions = Counter(w for i in members for w in token_sets[i] if w != word)
        label = " / ".join([word, *(w for w, _ in _most_common(companions, 2))])
        topics[f"new:{word}"] = Topic(f"new:{word}", label, False)
        for i in members:
            assigned[i].append(f"new:{word}")
        taken = set(members)
        rest = [i for i in rest if i not in taken]
    return assigned, topics


def hot_topics(
    con: duckdb.DuckDBPyConnection, month: str, zone: str, locale: str = "en"
) -> list[Topic]:
    """This month's dissatisfied comments by topic, against last month, hottest first."""
    previous = shift_month(month, -1)
    first, end = month_start(previous), month_start(shift_month(month, 1))
    lo, hi = stored_range(first, end)
    params = {"zone": zone, "first": first, "end": end, "lo": lo, "hi": hi}
    frame = query_frame(con, COMMENTS_SQL, params)
    return count_topics(frame, month, locale)


def count_topics(frame: pl.DataFrame, month: str, locale: str = "en") -> list[Topic]:
    """``frame``: month, store_id, comment (this month and the one before)."""
    rows = list(frame.iter_rows(named=True)) if frame.height else []
    assigned, topics = label_topics([r["comment"] for r in rows], locale)
    totals = Counter(r["month"] for r in rows)
    for row, names in zip(rows, assigned, strict=True):
        for name in names:
            _count(topics[name], row, row["month"] == month)
    previous_total = sum(n for m, n in totals.items() if m != month)
    for topic in topics.values():
        _judge(topic, totals.get(month, 0), previous_total)
    found = [t for t in topics.values() if t.count or t.previous]
    return sorted(found, key=lambda t: (not t.hot, -t.count, t.name))


def _count(topic: Topic, row: dict[str, Any], this_month: bool) -> None:
    if not this_month:
        topic.previous += 1
        return
    topic.count += 1
    topic.stores[row["store_id"] or "(none)"] += 1
    if len(topic.examples) < EXAMPLES and row["comment"] not in topic.examples:
        topic.examples.append(row["comment"])


def _judge(topic: Topic, total: int, previous_total: int) -> None:
    topic.share = topic.count / total if total else 0.0
    topic.previous_share = topic.previous / previous_total if previous_total else 0.0
    test = compare(
        Moments(total, topic.count, topic.count),
        Moments(previous_total, topic.previous, topic.previous),
        binary=True,
    )
    topic.p_value = test.p_value if test else None
    rose = test is not None and test.estimate > 0 and test.p_value < 0.05
    doubled = topic.count >= HOT_RATIO * max(topic.previous, 1)
    topic.hot = rose and doubled and topic.count >= MIN_COUNT
