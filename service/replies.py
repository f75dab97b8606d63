"""What we answer a customer's SMS with, and the IVR's closing words."""

from __future__ import annotations

from functools import cache

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from campaigns.content import sentences
from core.ivr import OFFER_OPT_OUT
from feedback.parsing import Intent, ParsedReply

# Twilio answers these itself on long codes (and blocks sends after STOP): we add nothing.
TWILIO_HANDLED = {
    "stop",
    "stopall",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "start",
    "yes",
    "unstop",
    "help",
    "info",
}
TEXT = {
    "thanks": {"zh-CN": "感谢您的评价！", "en": "Thank you for your feedback!"},
    # No promise of a call: the webhook cannot tell whether a survey of ours is open for the
    # sender (the warehouse knows), and a 1 from a number we never surveyed opens no case.
    "sorry": {
        "zh-CN": "很抱歉让您失望了，感谢您告诉我们。",
        "en": "We're sorry we let you down. Thank you for telling us.",
    },
    "help": {
        "zh-CN": "回复1-5为服务打分（5=非常满意），回复TD退订。",
        "en": "Reply 1-5 to rate us (5 = very satisfied). Reply STOP to opt out.",
    },
    "clarify": {
        "zh-CN": "请回复数字1-5为本次服务打分（5=非常满意）。",
        "en": "Please reply with a number from 1 to 5 (5 = very satisfied).",
    },
    "opted_out": {
        "zh-CN": "您已退订，回复START可重新订阅。",
        "en": "You're unsubscribed. Reply START to subscribe again.",
    },
    "opted_in": {"zh-CN": "您已重新订阅。", "en": "You're subscribed again."},
    "voice_thanks": {"zh-CN": "谢谢您的评价，再见。", "en": "Thank you for your rating. Goodbye."},
    "voice_none": {"zh-CN": "没有收到您的评分，再见。", "en": "We did not get a rating. Goodbye."},
    "voice_opted_out": {
        "zh-CN": "好的，我们不会再给您打电话或发短信。再见。",
        "en": "Done: you will receive no more calls or texts from us. Goodbye.",
    },
}
VOICE_LANGUAGE = {"zh-CN": "zh-CN", "en": "en-US"}


def locale_of(phone: str) -> str:
    """The service does not read the warehouse, so it answers by the number's country."""
    return "zh-CN" if phone.startswith("+86") else "en"


def sms_answer(parsed: ParsedReply, body: str, locale: str, may_clarify: bool) -> str:
    return _twiml_message(_sms_text(parsed, body.strip().lower(), locale, may_clarify))


@cache
def _twiml_message(text: str | None) -> str:
    """The TwiML for one of a handful of texts, built once each."""
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)


def _sms_text(parsed: ParsedReply, keyword: str, locale: str, may_clarify: bool) -> str | None:
    if keyword in TWILIO_HANDLED:
        return None
    if parsed.intent == "rating":
        return TEXT["sorry" if (parsed.score or 5) <= 2 else "thanks"][locale]
    if parsed.intent in ("opt_out", "opt_in", "help"):
        return TEXT[{"opt_out": "opted_out", "opt_in": "opted_in", "help": "help"}[parsed.intent]][
            locale
        ]
    return TEXT["clarify"][locale] if may_clarify else None


VOICE_ANSWER = {"rating": "voice_thanks", "opt_out": "voice_opted_out"}


def voice_answer(intent: Intent, locale: str) -> str:
    response = VoiceResponse()
    text = TEXT[VOICE_ANSWER.get(intent, "voice_none")][locale]
    response.say(text, language=VOICE_LANGUAGE[locale])
    return str(response)


def voice_survey(gather_url: str, locale: str) -> str:
    """The survey question again (Twilio may fetch it to re-prompt)."""
    response = VoiceResponse()
    gather = response.gather(input="dtmf", num_digits=1, timeout=5, action=gather_url)
    prompt = {
        "zh-CN": "请按1到5键为本次服务打分，5表示非常满意。",
        "en": "Please press 1 to 5 to rate our service, where 5 means very satisfied.",
    }
    said = sentences(locale, prompt[locale], OFFER_OPT_OUT[locale])
    gather.say(said, language=VOICE_LANGUAGE[locale])
    response.say(TEXT["voice_none"][locale], language=VOICE_LANGUAGE[locale])
    return str(response)
