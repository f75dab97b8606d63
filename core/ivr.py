"""The IVR survey's keypad, one definition for what a call says (the campaigns' messages, the
service's re-prompt) and how a keypress is read (feedback.parsing)."""

from __future__ import annotations

RATING_KEYS = "12345"
# A call that asks for anything offers a way to refuse more (the FCC counts a key-press opt-out
# offered on an automated call as a revocation): one key, far from the ratings.
OPT_OUT_KEY = "9"
OFFER_OPT_OUT = {
    "zh-CN": f"如不想再接到我们的电话和短信，请按{OPT_OUT_KEY}。",
    "en": f"To receive no more calls or texts from us, press {OPT_OUT_KEY}.",
}
