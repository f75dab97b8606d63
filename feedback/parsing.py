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
from dataclasses import asdict, dataclass, replace
from typing import Literal

from core.ivr import OPT_OUT_KEY, RATING_KEYS
from feedback.verdicts import SUPPOSING, verdict

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
    "arrete",
    "basta",
    "alto",
    "停发",
    "remove",
    "quit it",
    "回复 td",  # the instruction copied back: "回复TD退订" without its 退订
    "回 td",
    "t d",
    "st op",
    "退 订",  # a full-width space between
    "退钉",  # an input method's slip
    "tuiding",
    "tui ding",
    "bie fa le",
    "退出",
    "免打扰",
    "no more",
}
OPT_IN = {"start", "yes", "unstop", "start again", "resubscribe", "重新订阅", "恢复订阅"}
# Asking back in a sentence: "I want to subscribe again", "please resubscribe me".
OPT_IN_SAID = re.compile(r"\bre-?subscribe\b|\bsubscribe\s+(?:me\s+)?again\b|重新订阅|恢复订阅")
HELP = {
    "help", "info", "帮助", "求助", "怎么回复", "怎么评分", "怎么打分", "怎么评价", "help me",
    "how do i rate", "how does this work", "what is this",
}  # fmt: skip
# Words that mean "stop contacting me" wherever they stand.
OPT_OUT_WORDS = {"stop", "stopall", "unsubscribe", "unsub", "revoke", "optout"}
OPT_OUT_CHINESE = (
    "退订",
    "取消订阅",
    "停止发送",
    "停止推送",
    "拒收",
    "勿扰",
    "拉黑",
    "别烦我",
    "免打扰",
)
# TD beside Chinese words ("态度差，TD", "回td", "td了"): our opt-out code, not a bank.
_TD_IN_CHINESE = re.compile(r"(?<![a-z])td(?![a-z]|-[a-z])(?!\s*(?:是什么|是啥|什么意思|啥意思))")
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
    r"\b(?:do\s*n[o']?t|never)\s+(?:ever\s+)?(?:text|txt|message|sms|call|contact|email|bother"
    r")\w*\s+(?:me|us|this\s+(?:number|phone)|my\s+(?:number|phone))\b"
    r"|\b(?:remove|delete|lose|erase)\s+(?:my|this)\s+(?:number|phone|details|info)\b"
    r"|\bdo\s*n[o']?t\s+want\s+(?:to\s+(?:receive|get)\s+)?(?:these|your|any|the|more|those)?"
    r"\s*(?:more\s+)?"
    r"(?:texts?|txts?|messages?|sms|calls?|surveys?|emails?)\b"
    r"|\benough\s+(?:with\s+)?(?:the|these|your)?\s*(?:texts?|messages?|surveys?)\b"
    r"|\bno\s+more\s+(?:texts?|txts?|msgs?|messages?|sms|calls?|surveys?|emails?|contact"
    r"|of\s+(?:these|this|them))\b|\bpl(?:s|z|ease)\s+no\s+more\W*$"
    r"|\b(?:do\s*n[o']?t|dnt|dont)\s+(?:text|txt|message|call|contact|email|survey)\w*"
    r"\s+(?:me\b|us\b|again|any\s*more|more|this)"
    r"|\b(?:do\s*n[o']?t|dnt|dont)\s+send\s+(?:me\s+|us\s+)?(?:any\s*more|again|more|these|those"
    r"|texts?|messages?|surveys?|sms)\b"
    r"|^(?:please\s+)?do\s*n[o']?t\s+(?:text|call|contact|message|email|sms)\W*$"
    r"|\bdo\s*n[o']?t\s+(?:call|contact|text)\s+list\b|\bopt(?:ing|ed)\s+out\b(?!\s+of\b)"
    r"|\bno\s+longer\s+(?:wish|want)\b|\bdo\s*n[o']?t\s+(?:wish|need)\s+(?:to\s+receive\s+)?"
    r"(?:these|your|any|the)\b|\brather\s+not\s+(?:get|receive)\b"
    r"|\brefrain\s+from\s+(?:messaging|texting|contacting|calling)\b|\bcount\s+me\s+out\b"
    r"|\bnot\s+interested\s+in\s+(?:these|your|any)?\s*(?:texts?|messages?|surveys?)\b"
    r"|\bcease\s+and\s+desist\b|\b(?:cancel|end|quit)\s+(?:all\s+)?(?:future\s+)?"
    r"(?:communications?|contact)\b"
    r"|\b(?:remove|delete|take)\s+me\s+(?:off|from)\b|\b(?:remove|delete)\s+me\W*$"
    r"|\btake\s+my\s+(?:number|details)\s+off\b"
    r"|\bleave\s+me\s+alone\b"
    r"|\bopt\s+me\s+out\b"
    # in pinyin, as a phone without a Chinese keyboard writes 不要再发了, 别发了, 退订
    r"|\b(?:bu\s*yao|bie)\s*(?:zai\s*)?(?:fa|da|gei\s*wo\s*fa)(?:\s*(?:le|la|duan\s*xin|xin\s*xi"
    r"|la\s*ji\s*duan\s*xin))*(?=\s*(?:$|[^a-z\s]|(?:thx|thanks|thank you|lol|pls|please"
    r"|xie\s*xie)\b))"
)
PLEASE_STOP_ZH = re.compile(
    r"(?:不要|别|勿|不用)再(?:给我)?(?:发|打|联系|骚扰)"
    r"|(?:不要|别|勿)(?:再)?(?:给我|跟我)?(?:发|打|传)(?:短信|消息|信息|讯息|简讯|电话|这些|这种|了|啦|$)"
    r"|(?:不要|别|勿)(?:再)?(?:给我)?(?:来|发|传)(?:短信|消息|信息|讯息|简讯|电话)"
    r"|(?:不要|别)(?:再)?(?:sms|text|txt|msg|call)"
    r"|(?:不要|别|请勿|勿)(?:再)?(?:打扰|骚扰|联系我|推送|给我推送|传送)"
    r"|(?:不要|别|请勿|勿)(?:再)?(?:给我)?(?:发|打)?推销(?:短信|电话|信息|东西|任何东西)?(?:了|啦)?"
    r"(?=$|[\s,，.。!！?？~～]|好吗|好么|行吗|行不行|可以吗|好不好|谢谢|吧|哦|啊)"
    r"|不想(?:再)?收到|(?:取消|关闭|关掉|停掉)(?:这个|这些|这种)?(?:短信|消息|通知|提醒|推送)++"
    r"(?!业务|服务|功能|套餐)"
    r"|(?:不需要|无需|不要|拒绝|取消|不接受|不用|别)(?:这种|这类|再)?回访|(?:不再|拒绝)接收"
    r"|拒绝(?:一切|任何)?(?:推销|营销)?短信|停止(?:给我|向我|向本号码|往本号码)发送"
    r"|请停止.{0,8}发送|(?:不用|没必要)(?:再)?发(?:了|短信|这种|这类|消息|$)"
    r"|勿发|(?:移出|删掉|删除).{0,4}名单|名单.{0,3}(?:删|移)|(?<!被)(?:加入|拉入|放进|列入|拉进)黑名单"
    r"|(?:^|已|我已经?|已经)屏蔽(?!了?信号)|注销.{0,6}订阅"
    r"|别(?:再)?问了|别(?:来)?烦我"
    r"|(?:删|删除|删掉)(?:了)?(?:我的?)(?:号码|手机号|电话)|把我(?:的)?(?:号码|手机号|电话)?删"
    r"|退定(?!金)"
    # "再发我就投诉": send again and I complain, a request to stop however it is put
    r"|再(?:发|打|来|推送)(?:我|短信|信息|电话|这种)?(?:的话)?(?:我)?就?(?:投诉|举报|报警|拉黑)"
)
# Each Chinese request above has one of these: most replies have none, and skip it.
_PLEASE_STOP_ZH_START = (
    "不要", "别", "勿", "不用", "不想", "取消", "关", "停", "删", "退定", "回访", "接收", "拒绝",
    "没必要", "名单", "屏蔽", "注销", "再",
)  # fmt: skip
_LATIN_WORD = re.compile(r"[a-z]+")
# A refusal, set aside first: a wish not to ("不要退订", "我还不想退订", "不要给我退订", "我没有要
# 退订"), or the customer's own 不退订 said as a decision ("我不退订", "我暂时不退订", "还是不退订
# 了"). Anything else with 不退订 or 没退订 (a complaint, "说了几次都没退订", "你们就是不退订",
# "不得不退订"; a threat, "不退订我就投诉"; a question, "谁还不想退订？") is read as asking to
# stop: a missed request costs more than a needless one.
_OWN_DECISION = "|".join(
    f"(?<={word})"
    for word in (
        "我", "我们", "家", "暂时", "先", "目前", "就", "肯定", "当然", "才", "那就", "算了",
        "决定", "还是",
    )
)  # fmt: skip
_REFUSED_ZH = re.compile(
    r"(?<!谁)(?<!谁还)(?:(?:不要|不想|不用|不会|别|无需|并不想|不打算)(?:给我|帮我)?"
    r"|没有?(?:要|想|打算))退订"
    rf"|(?:^|(?<=[,，。.!！\s])|(?:{_OWN_DECISION})(?<!你们就)(?<!你们还是))不退订"
    r"(?=$|[了呢啊吧哈,，。.!！\s])"
)
# What uses the words and asks nothing of our messages: a plan or a pack unsubscribed at the
# store ("退订了流量包还在扣费", "我要退订这个套餐", "帮我退订了不需要的增值业务"), a refusal in
# English ("I won't unsubscribe", "don't stop"): set aside before the words are looked for.
_NOT_OPT_OUTS = re.compile(
    r"退订(?:了)?(?:这个|一个|那个|了一个)?(?:套餐|流量包|流量|业务|会员|增值|彩铃|包月)"
    r"|(?:想|要|怎么|如何)?退订(?:了|一下)?[^,，.。!！?？]{0,6}"
    r"(?:套餐|流量包|业务|彩铃|会员|包月|增值)"
    r"|(?:套餐|流量包|业务|会员|彩铃|包月)(?:的)?(?:退订|取消订阅)|取消订阅(?:的)?(?:视频|会员|套餐|业务)"
    r"|\b(?:do\s*n[o']?t|won'?t|will\s+not)\s+(?:stop|unsubscribe)\b"
)
# 退订 said of our messages, whatever word for a service follows ("我要退订你们的短信业务"):
# an opt-out, before the plans and packs above are set aside; not a bundle ("短信套餐").
_STOP_OUR_MESSAGES_ZH = re.compile(
    r"退订(?:(?!套餐|流量|业务|会员|彩铃|包月|增值)[^,，.。!！?？;；]){0,6}?"
    r"(?:短信|信息|消息|通知|推送|广告|来电|电话|回访|调查|邮件)(?!套餐|包)"
    # a pack named in a message ("退订短信里的流量包", "短信里推荐的", "短信里那个彩铃") is
    # the pack's; not a message full of packs ("退订短信里全是套餐广告")
    r"(?!(?:里|中|上)(?:[^,，。.!！?？]{0,6}?(?:的|那个|这个))?(?:那个|这个)?"
    r"(?:套餐|流量|业务|会员|彩铃|包月|增值))"
)
# Stop and unsubscribe as thumbs type them: "stopp", "Unsubcribe", "unsubscibe".
_MISSPELT_STOP = re.compile(r"stop{2,}|stpo|sotp|stahp|unsub\w*|uns[a-z]{2,}(?:be|b)")
# Letters that look Latin in other scripts, as a forwarded or disguised "Ѕtор" or "SТОР" has
# them; read as Latin only inside a word that has a Latin letter too (so стоп stays Russian).
_LOOK_ALIKES = str.maketrans(
    "АВЕЅІЈКМНОРСТХУаеѕіјкорсхуΑΒΕΗΙΚΜΝΟΡΤΧΥΖοτ",
    "ABESIJKMHOPCTXYaesijkopcxyABEHIKMNOPTXYZot",
)
# A word, for finding those that mix scripts: each word is looked at once, so a reply of any
# length costs its length (a pattern that searched for the mix inside a word took 10 s and
# more on a 1,600-letter "hahaha…", while the service's webhook waited on it).
_WORD_RUN = re.compile(r"\w+")
_LATIN_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_LOOK_ALIKE_LETTERS = frozenset("АВЕЅІЈКМНОРСТХУаеѕіјкорсхуΑΒΕΗΙΚΜΝΟΡΤΧΥΖοτ")
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
# Words that rate when a reply begins with them: a digit right after is the one they chose
# ("一般 2"), else the reply's verdict counts (feedback/verdicts.py). Longest first.
RATING_WORDS = sorted(
    ("非常不满意", "很不满意", "不满意", "非常满意", "很满意", "满意", "一般", "very dissatisfied",
     "very unsatisfied", "dissatisfied", "unsatisfied", "very satisfied", "satisfied", "neutral"),
    key=len, reverse=True,
)  # fmt: skip
# What a leading number counts when it is not the rating: a time, a date, a wait, a store
# or a floor. Only what cannot begin a word of a comment ("1月租太贵" is a 1 on the monthly
# fee, "5点赞" a 5 and a like, "1人工客服太差" a 1): the unit with what follows it.
_COUNTED_ZH = re.compile(
    r"^(?:[点:：][0-9]|点(?:钟|半|多|才|就|到|前|后|以|左右|了|的|开门|关门|$)"
    r"|月[0-9]|月份|月初|月底|月的|号(?!码)|日|周(?!到)|楼(?![下上层道梯])|层(?!层)"
    r"|个(?!赞|人觉得|人感觉|人认为|人意见|人建议|人体验|人看法)|[人位](?![工员家性])"
    r"|小时|分钟|钟头|(?:星期|礼拜)(?:没|都|了|才|内|后|前)|天(?!气)|次(?!性)|遍|张|年(?!轻)"
    r"|块|元(?!旦)|GB|G流量|M流量)"
)  # glued to the number: after a space, a comment may begin with any word ("1 元旦排队好久")
# Not "staff": "2 staff were rude" is a 2 and its comment.
COUNTED_EN = {
    "hour", "hours", "hr", "hrs", "minute", "minutes", "min", "mins", "day", "days", "week",
    "weeks", "wk", "wks", "month", "months", "year", "years", "yr", "yrs", "sec", "secs",
    "seconds", "pm", "gb", "mb", "jan", "january", "feb", "february", "march", "apr", "april",
    "jun", "june", "jul", "july", "aug", "august", "sep", "sept", "september", "oct",
    "october", "nov", "november", "dec", "december", "people", "persons", "guys", "times",
    "visits", "tellers", "bars", "phones", "customers", "machines", "counters", "windows",
    "employees", "workers", "agents", "clerks", "cards", "lines", "sims", "ahead",
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
    rf"^(?:[/.][0-9]|-[0-9]{{2}}|\s*(?:[ap]\.\s?m\.|o'clock)|\s*out\s+of\s+5\s+{_COUNTED_NOUNS}"
    r"|\s*out\s+of\s+(?!5\b)[0-9]+)",
    re.IGNORECASE,
)
# What a trailing number counts when it is not the rating: glued to a Chinese place or plan
# ("窗口2", "套餐1"; "VIP窗口 5" ends with its rating), or in English after a place, a time, a
# month or a plan, unless "the" makes it the thing their rating is about ("counter 2", "at
# 5", "March 3", "plan 2"; "rude staff at the counter 1").
_PLACE_BEFORE = re.compile(
    r"(?:窗口|柜台|取号|工号|套餐|方案|充值|充了|剩|周|初|小米|华为)$"
    r"|(?<!the )\b(?:store|shop|branch|counter|window|desk|line|floor"
    r"|table|ticket|route|room|gate|level|booth|aisle|bus|at|till|until|around|by|since|before"
    r"|after|jan|january|feb|february|march|apr|april|may|jun|june|jul|july|aug|august|sept?"
    r"|september|oct|october|nov|november|dec|december|plan|package|tariff|version|waited"
    r"|of|aged|iphone|ipad|galaxy|pixel|note|no)[\s.#:]*$",
    re.IGNORECASE,
)
# A number they say it is not: "wouldn't give 5", "not a 5", "不是5分".
_NEGATED_BEFORE = re.compile(
    r"(?:\bnot|n't|\bnever)(?:\s+(?:a|an|give|giving|be|even|rate|it|them|you))*\s*$"
    r"|(?:不是|不到|不值|不给)\s*$"
)
# Number words count only as the whole reply: "one day I will" is not a rating. So do a zero
# (below the scale: its lowest, as "0分") and a bare "好" (good; "好的", "好吧" say okay).
WHOLE_REPLY_SCORES = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
WHOLE_REPLY_SCORES |= {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
WHOLE_REPLY_SCORES |= {"0": 1, "零": 1, "zero": 1, "好": 4}
_DIGIT = re.compile(r"^([1-5])(?![0-9])(?!\.[0-9])(分?)(.*)$", re.DOTALL)
# A score mocked right after it ("5分？开什么玩笑", "5分，逗我玩呢"): scorn, as "满意才怪" is,
# unless praise or amazement follows ("4分，开什么玩笑，服务太好了", "5分，开什么玩笑，这么快就办好
# 了") or "！" marks it, without blame after it. Not a joke about something else ("逗我笑了",
# "逗我的小孩", "想得美的话"). English has none here: "you're kidding, so fast!" is praise.
_MOCKED = re.compile(
    r"[?？!！,，.。…~～\s]*(?:你们?)?"
    r"(?:开什么玩笑|在?逗我(?!笑|家|的(?:小孩|孩子|宝宝))|别逗了|想得美(?!的话))"
)
_AMAZED = re.compile(r"快|没得说|必须|当然|满分|五星|搞定|办好|办完|太好|真好|很好|专业|贴心")
_BLAMED = re.compile(r"差|慢|等了|排队|小时|投诉|门都没有|态度这么|烂")
# A rating after a comment: "停车不方便 3", "I stopped at the store 4", "一般 2 分". The digit
# stands alone (not "waited 45", "version 2.5", "A4").
_TRAILING_DIGIT = re.compile(
    r"^(.*?[^\d\s])[\s,，.。:：;；!！、~～-]*(?<![A-Za-z0-9./$¥#×])(?<!\+(?=1))([1-5])\s*分?[\s.。!！吧啊呀哦]*$"
)
# The five-point scale named: its 5 is not the rating. "Honestly 1 out of 5", "2 out of 5
# stars, rude" anywhere, but not "2 out of 5 staff were working" (a count); "4/5" only as the
# whole reply ("came on 3/5" is a date); "满分5分" set aside when another digit is the rating.
_OUT_OF_FIVE = re.compile(
    rf"(?<![0-9.])([1-5])\s*out\s+of\s+(?:5|five)(?:\s*stars?)?(?!\.?[0-9])(?!\s+{_COUNTED_NOUNS})",
    re.IGNORECASE,
)
# "N/5" or "N/10" (halved, rounded up) as the whole reply, after a word that rates ("Overall
# 2/5", "服务：2/5", "I'd rate 3/5", "给个4/5"), as a clause of its own ("staff rude, 2/5"), or
# first with a comment ("1/5 staff ignored me"), unless what follows dates it ("4/5 visit",
# "3/5去的"): "I came on 3/5" is a date.
_SLASHED = re.compile(
    r"^(?P<before>.*?)(?<![0-9./])(?P<n>10|[0-9])\s*/\s*(?P<of>5|10)(?![0-9])(?P<gap>\s*)分?"
    r"(?P<rest>.*)$",
    re.DOTALL,
)
_RATES_BEFORE = re.compile(
    r"(?:\b(?:rate|rated|rating|give|gave|say|overall|score|service)|服务|给个?|打个?|评分|总体|整体"
    r"|[,，.。!！;；:：])[\s:：]*$",
    re.IGNORECASE,
)
_DATED_AFTER = re.compile(
    r"^\s*(?:visit|appointment|at|in|on|to|from|-|[0-9]|去|到|来|的|号|日|那|办)", re.IGNORECASE
)
# "给2分吧", "只能给3分了", "打个4分": the points they give, wherever it stands, unless
# supposed or refused ("如果…给5分", "不给5分", "if … I'd give 5").
_GIVE_ZH = r"(?:我|我们)?(?:给|打)(?:个|了|你们|你)?\s*"  # then the points
# What 分 begins besides points: 分钟 (minutes), 分钱 (cents), 分制 (a scale).
NOT_POINTS = ("钟", "钱", "制")
_POINTS = rf"\s*分(?!{'|'.join(NOT_POINTS)})"
# "I'd rate it a 4, quick and easy", "I give you guys a 2": the digit stands alone
_GIVES_EN = (
    r"\b(?:(?:i|we)(?:'d|'ll| would| will)?\s+)?(?:rate|give|gave|rated)\s+"
    r"(?:it|you|u|you guys|u guys|you all|them|this(?: place)?|the (?:store|shop|service|visit))?"
    r"\s*(?:an?\s+)?"
    r"([0-5])(?![0-9])(?!\.[0-9])(?!\s*(?:out\s+of|/|-|stars?))"
)
_GIVES = re.compile(f"{_GIVE_ZH}([0-5]){_POINTS}|{_GIVES_EN}", re.IGNORECASE)
# The ten-point scale named ("满分10分给8分", "10分制打9分"): the points given, halved (8 is 4).
_TEN_POINT_SCALE = re.compile(
    r"[(（]?\s*(?:满分\s*10(?![0-9])\s*分?|10\s*分制)\s*[)）]?\s*[,，:：]?\s*" + f"(?={_GIVE_ZH})"
)
_GIVES_OF_TEN = re.compile(_GIVE_ZH + r"(10|[0-9])" + _POINTS)
_SUPPOSED = re.compile(SUPPOSING, re.IGNORECASE)
_GIVES_NOT = re.compile(
    rf"要不是.*|(?:{SUPPOSING})[^,，.。;；]*$|(?:不|没|不会|不能|不想|本来想|原本想|想)$"
    # points someone else asked for ("店员让我给5分", "the manager asked us to give 5")
    r"|(?:让|叫|求|要求|逼|催)(?:我|我们)?(?:一定|必须|务必)?$"
    r"|\b(?:ask(?:ed|s)?|told|tell|begg?(?:ed|s)?|want(?:ed|s)?|pressur(?:ed|es)|forc(?:ed|es)"
    r"|push(?:ed|es)?|made|make|urg(?:ed|es))\s+(?:me|us)\s+to\s*$",
    re.IGNORECASE,
)
_FULL_MARKS = re.compile(r"[(（]?\s*满分\s*5\s*分?\s*[)）]?")
# A digit right after a rating word: the digit they chose ("一般 2", "满意度5", "不满意…1").
_AFTER_WORD = re.compile(
    r"^度?[\s,，.。:：;；!！、~～…-]*([1-5])(?![0-9.])\s*分?[\s.。!！吧啊呀哦]*$"
)
_SEPARATORS = " \t\r\n,，.。:：;；!！、-—~～"
# A score written with a unit or in signs, as one digit with 分 for the rules below:
# "五星好评", "给个五星", "两分", "三颗星", "1星差评", "★★★☆☆", "⭐⭐⭐", "one star", "2 stars".
# 0 and 零 are below the scale, its lowest ("0分", "zero stars"). Only when nothing glued on
# makes it something else: "五分钟", "一分钱", "三分之一", "一星期", "三星手机" (Samsung), "十五分".
_SCORES = {"0": 1, "零": 1, "zero": 1, "一": 1, "one": 1, "二": 2, "两": 2, "two": 2}
_SCORES |= {"三": 3, "three": 3, "四": 4, "four": 4, "五": 5, "five": 5}
_SCORES |= {str(n): n for n in range(1, 6)} | {"no": 1}
_SCORE_ZH = re.compile(
    r"(?<![0-9一二两三四五六七八九十百千万零第几])(?<!买个)(?<!买了个)(?<!换了个)(?<!换个)(?<!用)(?<!买了)(?<!换了)(?<!买)(?<!换)"
    r"([0-5]|[零一二两三四五])\s*[个颗]?\s*([星分])"
    r"(?=$|[\s,，.。!！;；~～、…吧啊呀哦了都也好差不给满非很没])"
)
_SCORE_EN = re.compile(
    r"\b(zero|one|two|three|four|five|no|[0-5])\s*stars?\b|\b(zero|one|two|three|four|five)"
    r"(?=\s+out\s+of\s+(?:5|five)\b)",
    re.IGNORECASE,
)
# Less than N: "3分都嫌多", "3分都不值", "不到3分" are below it.
_BELOW = re.compile(r"([1-5])\s*分\s*都(?:嫌多|多了|不值|给多了|嫌高)|不到\s*([1-5])\s*分")
# Half a point is kept down: "4.5分", "给3.5分", "四星半" (a bare "4.5" only as the whole reply).
_HALF = re.compile(r"(?<![0-9.])([1-4])\.5\s*[分星]|([一二两三四])[分星]半|^([1-4])\.5$")
_NEGATIVE_SCORE = re.compile(r"负\s*(?:[0-5]|[零一二两三四五])?\s*[星分]")  # below zero: the lowest
# A number beside one star sign is its stars: "五⭐", "5 ⭐", "⭐x5", "⭐️ 5".
_NUMBER_STAR = re.compile(
    r"([0-5]|[零一二两三四五])\s*[x×*]?\s*[★⭐🌟]\ufe0f?(?![★⭐🌟\ufe0f])"
    r"|(?<![★⭐🌟\ufe0f])[★⭐🌟]\ufe0f?\s*[x×*]?\s*([0-5])(?![0-9])"
)
_STAR_CHARS = "★⭐🌟"
_STAR_SIGNS = re.compile(r"([★⭐🌟]\ufe0f?){1,5}(?:[☆✩]\ufe0f?)*")
# Traditional characters of the words this module reads, and their simplified forms: Hong
# Kong, Macau and Taiwan customers write 退訂 and 不滿意.
_SIMPLIFIED = str.maketrans(
    "訂閱請傳訊發別簡滿態勁來顆給評薦個時還務們這說電話號碼煩擾騷價錢塊點鐘樓層費櫃臺覺無聯繫辦謝讚爛壞極"
    "較對錯讓問題種條週過數幾從後應該單獲級麼幹嗎顧惡遠選擇網絡稱質體驗環負聽難總結馬湊劃驚熱專業親標準確實沒會為東車開關門復兩幫氣舊現隊間",
    "订阅请传讯发别简满态劲来颗给评荐个时还务们这说电话号码烦扰骚价钱块点钟楼层费柜台觉无联系办谢赞烂坏极"
    "较对错让问题种条周过数几从后应该单获级么干吗顾恶远选择网络称质体验环负听难总结马凑划惊热专业亲标准确实没会为东车开关门复两帮气旧现队间",
)
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
    spaces; zero-width characters go, runs of whitespace become one space, and the traditional
    characters of the words read here become simplified (退訂 is 退订, 不滿意 不满意)."""
    folded = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_SIMPLIFIED)
    return " ".join(folded.split())


def parse_reply(text: str | None) -> ParsedReply:
    """What a reply says: read on its folded copy (``normalize``), its comment given back in
    the customer's own characters (``as_written``)."""
    parsed = _read(text or "")
    if parsed.comment is None:
        return parsed
    return replace(parsed, comment=as_written(text or "", parsed.comment))


def as_written(text: str, comment: str) -> str:
    """``comment``, found in the reply's folded copy, as the customer wrote it: their
    full-width punctuation and traditional characters, which the manager's page and lists show
    (the folded copy said "差评,退订" for "差评，退订"). Runs of whitespace stay one space. A
    comment that is no stretch of the folded reply (a score in words rewritten, say) stays
    as it is."""
    folded, origin = _folded_with_origin(text)
    start = folded.find(comment)
    if start < 0 or not comment:
        return comment
    first, last = origin[start], origin[start + len(comment) - 1]
    return " ".join(text[first : last + 1].split())


def _folded_with_origin(text: str) -> tuple[str, list[int]]:
    """``normalize(text)`` character by character, with the index in ``text`` each of its
    characters comes from; ("", []) where folding a character alone differs from folding the
    whole (a combining accent joins the letter before it)."""
    chars: list[str] = []
    origin: list[int] = []
    space_at: int | None = None
    for i, char in enumerate(text):
        for folded in (
            unicodedata.normalize("NFKC", char).translate(_INVISIBLE).translate(_SIMPLIFIED)
        ):
            if folded.isspace():
                space_at = i if space_at is None else space_at
                continue
            if space_at is not None and chars:
                chars.append(" ")
                origin.append(space_at)
            space_at = None
            chars.append(folded)
            origin.append(i)
    folded_text = "".join(chars)
    return (folded_text, origin) if folded_text == normalize(text) else ("", [])


def _read(text: str) -> ParsedReply:
    cleaned = normalize(text)
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
    if bare in OPT_IN or OPT_IN_SAID.search(cleaned.lower()):
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
    return _WORD_RUN.sub(_latin_if_mixed, bare)


def _latin_if_mixed(word: re.Match[str]) -> str:
    """A word with Latin letters and look-alikes of them, read as Latin; any other as it is."""
    letters = set(word.group())
    mixed = not letters.isdisjoint(_LATIN_LETTERS) and not letters.isdisjoint(_LOOK_ALIKE_LETTERS)
    return word.group().translate(_LOOK_ALIKES) if mixed else word.group()


def _bare(text: str) -> str:
    """The reply's words, lower case, without punctuation or politeness: "Stop, please!" is
    "stop"; "回复TD退订" keeps its words."""
    words = [w for w in _WORD.findall(text.lower()) if w not in POLITE]
    return " ".join(w.removeprefix("请") or w for w in words)


def _asks_to_stop(lowered: str) -> bool:
    lowered = _REFUSED_ZH.sub(" ", lowered)
    if _STOP_OUR_MESSAGES_ZH.search(lowered):
        return True
    lowered = _NOT_OPT_OUTS.sub(" ", lowered)
    if not lowered.isascii():
        if any(phrase in lowered for phrase in OPT_OUT_CHINESE) or _TD_IN_CHINESE.search(lowered):
            return True
        if any(start in lowered for start in _PLEASE_STOP_ZH_START) and PLEASE_STOP_ZH.search(
            lowered
        ):
            return True
        lowered = lowered.replace("\u2019", "'")  # a phone's curly apostrophe: "don’t"
    words = _LATIN_WORD.findall(
        lowered.replace("opt-out", "optout").replace("opt out", "optout").replace("0", "o")
    )  # "ST0P": a zero for the o
    if not words:
        return False
    if lowered.isascii() and set(words) == {"td"}:  # "TD TD TD", "T.D."
        return True
    if not OPT_OUT_WORDS.isdisjoint(words) or any(_MISSPELT_STOP.fullmatch(w) for w in words):
        return True
    if not OPT_OUT_WHEN_ABOUT_US.isdisjoint(words):
        for at, word in enumerate(words):
            if word in OPT_OUT_WHEN_ABOUT_US and ABOUT_US.intersection(words[at + 1 : at + 3]):
                return True
    return PLEASE_STOP_EN.search(lowered) is not None


def _rating(text: str) -> ParsedReply | None:
    text = " ".join(_scores_as_digits(text).split())  # a rewrite's spaces, as normalize leaves them
    scaled = list(_OUT_OF_FIVE.finditer(text))
    if scaled:
        last = scaled[-1]
        rest = f"{text[: last.start()].rstrip()} {text[last.end() :].lstrip()}"
        return ParsedReply("rating", int(last.group(1)), _comment(rest))
    slashed = _slashed(text) or _points_of_ten(text)
    if slashed:
        return slashed
    text = _without_full_marks(text)
    match = _DIGIT.match(text)
    if match and _leading_rating(match.group(2), match.group(3)):
        if _mocked(match.group(3)):  # "5分？开什么玩笑": scorn of the score
            return ParsedReply("rating", 1, _comment(text))
        return ParsedReply("rating", int(match.group(1)), _comment(match.group(3)))
    given = _points_given(text)
    if given:
        return given
    lowered = text.lower()
    word = lowered.rstrip(_SEPARATORS)
    if word in WHOLE_REPLY_SCORES:
        return ParsedReply("rating", WHOLE_REPLY_SCORES[word])
    for phrase in RATING_WORDS:
        if lowered.startswith(phrase):
            rest = text[len(phrase) :]
            if rest and phrase.isascii() and rest[0].isalnum():
                continue  # "fives", "one day": the word is part of something else
            chosen = _AFTER_WORD.match(rest)  # the digit they chose, right after the word
            if chosen:
                return ParsedReply("rating", int(chosen.group(1)), _comment(text[: len(phrase)]))
            said = verdict(lowered)  # the word, or the verdicts it agrees with
            if said is None:
                break  # "满意吗？", "满意度", mixed verdicts: perhaps a digit at the end
            # the word set apart is the rating, the rest its comment; a word that goes on
            # ("满意才怪", "一般般，…") leaves the whole reply as the comment
            apart = not rest or rest[0] in _SEPARATORS
            return ParsedReply("rating", said, _comment(rest if apart else text))
    trailing = _TRAILING_DIGIT.match(text)
    before = text[: trailing.start(2)] if trailing else ""
    if trailing and not any(r.search(before) for r in (_PLACE_BEFORE, _NEGATED_BEFORE, _SUPPOSED)):
        return ParsedReply("rating", int(trailing.group(2)), _comment(trailing.group(1)))
    said = verdict(lowered)
    return None if said is None else ParsedReply("rating", said, _comment(text))


def _mocked(rest: str) -> bool:
    """Whether what follows a leading score mocks it (see _MOCKED)."""
    mock = _MOCKED.match(rest)
    if mock is None:
        return False
    after = rest[mock.end() :]
    said = verdict(after.lower())
    if (said is not None and said <= 2) or _BLAMED.search(after):
        return True
    praised = (said is not None and said >= 4) or _AMAZED.search(after) is not None
    return not (praised or rest.lstrip().startswith(("!", "！")))


def _points_given(text: str) -> ParsedReply | None:
    """The last points given ("这次还行，给4分吧", "本来想给1分…给3分", "I'd rate it a 4, quick"),
    unless supposed or refused, with the rest as the comment."""
    for given in reversed(list(_GIVES.finditer(text))):
        before, after = text[: given.start()], text[given.end() :]
        refused = _GIVES_NOT.search(before) or _NEGATED_BEFORE.search(before)
        if not refused and not (given.group(2) and _not_the_rating(after)):
            rest = f"{before} {after}"
            return ParsedReply("rating", _SCORES[given.group(1) or given.group(2)], _comment(rest))
    return None


# Words that may follow an English "rate it N" in its clause ("rate it 4 thanks").
_AFTER_GIVEN = re.compile(r"\s*(?:(?:thx|thanks|thank you|lol|pls|please|overall|tbh)\b\W*)*$")
_LATER_DIGIT = re.compile(r"(?<![0-9.])[0-5](?![0-9])")


def _not_the_rating(after: str) -> bool:
    """Whether what follows an English "rate it N" says N is not the rating: words go on in
    its clause ("gave 1 free month", "gave it 2 tries", "would give it a 5 if…"), a
    supposition follows, or a later number is ("Last time I gave 1, this time 5")."""
    clause, *_ = re.split(r"[,，.。;；!！?？]", after, maxsplit=1)
    return (
        not _AFTER_GIVEN.fullmatch(clause)
        or _SUPPOSED.search(after) is not None
        or _LATER_DIGIT.search(after) is not None
    )


def _points_of_ten(text: str) -> ParsedReply | None:
    """Points given right after a ten-point scale named ("满分10分给8分", "10分制，打6分"):
    halved, rounded up, as "8/10" is."""
    scale = _TEN_POINT_SCALE.search(text)
    given = _GIVES_OF_TEN.match(text, scale.end()) if scale else None
    if scale is None or given is None or _GIVES_NOT.search(text[: scale.start()]):
        return None
    score = max(1, (int(given.group(1)) + 1) // 2)
    return ParsedReply("rating", score, _comment(f"{text[: scale.start()]} {text[given.end() :]}"))


def _slashed(text: str) -> ParsedReply | None:
    """A rating given as "N/5" or "N/10" (see _SLASHED), with the rest as its comment."""
    found = _SLASHED.match(text)
    if found is None:
        return None
    before, rest = found["before"], found["rest"]
    stands_alone = not before.strip(_SEPARATORS) and not rest.strip(_SEPARATORS)
    first = not before.strip() and (not rest or bool(found["gap"]) or rest[0] in _SEPARATORS)
    if not (stands_alone or _RATES_BEFORE.search(before)) and (
        not first or _DATED_AFTER.match(rest)
    ):
        return None
    n = int(found["n"])
    score = n if found["of"] == "5" else (n + 1) // 2
    return ParsedReply("rating", max(1, min(5, score)), _comment(f"{before} {rest}"))


def _scores_as_digits(text: str) -> str:
    """The reply with its scores written in words or signs as digits (see _SCORE_ZH). Each
    rewrite runs only where its sign is: most replies have none of them."""
    if "分" in text or "星" in text:
        text = _NEGATIVE_SCORE.sub("1分", text)
        text = _BELOW.sub(lambda m: f"{max(1, int(m.group(1) or m.group(2)) - 1)}分", text)
    if "." in text or "半" in text:
        text = _HALF.sub(lambda m: f"{_SCORES[m.group(1) or m.group(2) or m.group(3)]}分", text)
    if any(sign in text for sign in _STAR_CHARS):
        text = _NUMBER_STAR.sub(lambda m: f"{_SCORES[m.group(1) or m.group(2)]}分", text)
        text = _STAR_SIGNS.sub(lambda m: f" {_filled_stars(m.group())}分 ", text)
    if "star" in text.lower() or " out of " in text.lower():
        text = _SCORE_EN.sub(lambda m: str(_SCORES[(m.group(1) or m.group(2)).lower()]), text)
    if "分" in text or "星" in text:
        text = _SCORE_ZH.sub(_chinese_score, text)
    return text


def _filled_stars(signs: str) -> int:
    return sum(signs.count(sign) for sign in _STAR_CHARS)


def _chinese_score(found: re.Match[str]) -> str:
    numeral, unit = found.groups()
    if numeral == "零" and unit == "星":
        return found.group()  # 零星: scattered, not zero stars
    return f"{_SCORES[numeral]}分"


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
        return rest.startswith(NOT_POINTS)
    word = re.match(r"\s+([a-z]+)\b", rest.lower())  # the word right after the number
    return (
        _COUNTED_ZH.match(rest) is not None
        or (word is not None and word.group(1) in COUNTED_EN)
        or _COUNTED_AFTER.match(rest) is not None
    )


def _comment(rest: str) -> str | None:
    """What is left of the reply around its rating: the space the rating left before a
    separator goes with it ("我给3分，办个卡…" leaves "办个卡…")."""
    comment = _GAP_BEFORE_SEPARATOR.sub(r"\1", rest).strip(_SEPARATORS)
    return comment or None


_GAP_BEFORE_SEPARATOR = re.compile(r"\s+([,，.。!！;；:：、])")


def parse_digits(digits: str | None) -> ParsedReply:
    """An IVR keypress: 1-5 is a rating, the opt-out key opts out (of calls and texts: one
    phone, one consent); no input or another key is no answer."""
    key = (digits or "").strip()
    if len(key) == 1 and key in RATING_KEYS:
        return ParsedReply("rating", int(key))
    if key == OPT_OUT_KEY:
        return ParsedReply("opt_out")
    return ParsedReply("unknown", comment=None)
