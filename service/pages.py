"""The small pages behind email links: a rating's thank-you (with optional detail) and the
unsubscribe confirmation. Both languages on one page: the service does not know the locale."""

from __future__ import annotations

from jinja2 import Environment
from markupsafe import Markup

ATTRIBUTES = {
    "wait_time": ("等待时间", "Waiting time"),
    "staff_attitude": ("服务态度", "Staff attitude"),
    "problem_solved": ("问题解决", "Problem solved"),
}
_ENV = Environment(autoescape=True)
_LAYOUT = """<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{{ title }}</title>
<link rel="stylesheet" href="/static/careloop.css"></head><body class="plain">
{{ body }}</body></html>"""
_THANKS = _ENV.from_string("""<h1>感谢您的评价 / Thank you</h1>
<p>您的评分 / Your rating: <strong>{{ score }}</strong> / 5</p>""")
# A link only opens this page; mail scanners that follow links record nothing.
_CONFIRM = _ENV.from_string("""<h1>您的评分 / Your rating: {{ score }} / 5</h1>
<form method="post"><p>愿意多说几句吗？/ Tell us more (optional):</p>
{% for key, labels in attributes.items() %}<p><label>{{ labels[0] }} / {{ labels[1] }}
<select name="{{ key }}"><option value="">-</option>
{% for n in range(1, 6) %}<option>{{ n }}</option>{% endfor %}</select></label></p>{% endfor %}
<p><textarea name="comment" rows="4" cols="40" maxlength="1000"></textarea></p>
<p><button type="submit">提交评分 / Send my rating</button></p></form>""")
_UNSUBSCRIBE = _ENV.from_string("""<h1>退订邮件 / Unsubscribe</h1>
{% if done %}<p>您已退订。/ You are unsubscribed.</p>{% else %}
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">确认退订 / Unsubscribe</button></form>{% endif %}""")
_GONE = _ENV.from_string("<h1>链接已失效 / This link has expired</h1>")


def _page(title: str, body: str) -> str:
    # The body was rendered (and escaped) by its own template already.
    return _ENV.from_string(_LAYOUT).render(title=title, body=Markup(body))


def confirm_rating_page(score: int) -> str:
    return _page("Your rating", _CONFIRM.render(score=score, attributes=ATTRIBUTES))


def thanks_page(score: int) -> str:
    return _page("Thank you", _THANKS.render(score=score))


def unsubscribe_page(done: bool) -> str:
    return _page("Unsubscribe", _UNSUBSCRIBE.render(done=done))


def expired_page() -> str:
    return _page("Expired", _GONE.render())
