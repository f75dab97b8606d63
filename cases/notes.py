"""The notes careloop itself writes on a case's history: stored in English, the words of the
data, and shown on a store manager's page in the page's language. Each phrase is written
here once, with its translation: a writer uses these constants, never a note of its own."""

from __future__ import annotations

RATED_AGAIN = "rated the survey again "
SECOND_ROUND_RATED = "second round rated "
FOLLOW_UP_RATED = "follow-up rated "
NO_ANSWER = "no answer to the second round"
NOT_ASKED = "not asked again: "
ESCALATED = "escalated: "
# Why a follow-up was not asked (after NOT_ASKED), and whom an escalation told
NO_CONTACT = "no "
OPTED_OUT = "opted out of "
NO_CONSENT = "no consent for "
TOLD = "told "
NO_REGIONAL_CONTACT = "no regional contact to tell"

# Each phrase careloop begins a note with, and its Chinese
_ZH = {
    RATED_AGAIN: "客户再次评价了问卷：",
    SECOND_ROUND_RATED: "二次关怀评分：",
    FOLLOW_UP_RATED: "回访评分：",
    NO_ANSWER: "二次关怀未获回复",
    NOT_ASKED: "未再次询问：",
    ESCALATED: "已上报：",
}
# What may follow one: why a follow-up was not asked, whom an escalation told
_AFTER_ZH = {
    NO_REGIONAL_CONTACT: "没有可通知的区域联系人",
    OPTED_OUT: "已退订",
    NO_CONSENT: "未同意接收",
    NO_CONTACT: "无",
    TOLD: "已通知",
}
_WORDS_ZH = {"sms": "短信", "voice": "电话", "email": "邮件", "phone": "手机号"}


def shown_note(note: str | None, actor: str, locale: str) -> str | None:
    """The note as the page shows it: careloop's own phrases in Chinese on a Chinese page;
    what a manager or a customer wrote (a rating's comment) as they wrote it."""
    if note is None or locale != "zh-CN" or actor.startswith("manager"):
        return note
    for english, chinese in _ZH.items():
        if note.startswith(english):
            return chinese + _rest_zh(note[len(english) :])
    return note


def _rest_zh(rest: str) -> str:
    # A reason and its channel ("no consent for sms"), whom an escalation told, or a score
    # and the customer's comment ("2/5: 排队太久"), whose words stay theirs
    for english, chinese in _AFTER_ZH.items():
        if rest.startswith(english):
            said = rest[len(english) :]
            return chinese + _WORDS_ZH.get(said, said)
    score, colon, comment = rest.partition(": ")
    return f"{score}，{comment}" if colon and score.endswith("/5") else rest
