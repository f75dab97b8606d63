"""A verdict in words: the score a reply gives without a digit, as a careful reader takes it.

"我不满意", "服务太差了", "垃圾", "很失望", "terrible", "never again" are the dissatisfied (a
second round and a manager's case); "很好", "不错", "great", "love it" the satisfied; "一般",
"还行", "so-so", "fine" the neutral. The reader's care, written as rules:

- a negation turns a word: "不满意" 2, "没有不满意的" 4, "不算太差" and "not bad" 3, "not
  great" 2; scorn turns praise ("满意才怪", "far from satisfied"): each such form is listed
  before the word it contains, and the leftmost, longest reading of a place wins;
- a clause that asks, wishes or supposes says no verdict ("满意吗？", "如果快一点会很满意",
  "本来想给差评", "would be great if"), nor do greetings ("happy birthday", "good morning"),
  a courtesy ("不好意思") or asking for reviews ("求好评", "好评返现");
- a reply whose verdicts disagree ("服务很好，但是排队太久太差了", "satisfied with the staff,
  unhappy with the price") gives none: which one weighs more is the customer's to say. When
  they agree the strongest counts: all 3 or lower the lowest, all 3 or higher the highest, a
  notch lower beside a neutral word ("一般般，不过态度很好" is 4).

- before or another store is a measure ("比上次差多了" 2, "不比以前差" 3, "比以前好多了" 4;
  not the network's: "信号比之前差" is no verdict on the visit);
- misspelt English ("disapointed", "wasnt bad") and Chinese in pinyin ("bu manyi" 2, "hen
  manyi" 5, "mei you bu manyi" 4) read as the words they stand for.

Specific praise or blame with no verdict word ("排队太久", "staff were rude") is not guessed.
"""

from __future__ import annotations

import re

# What a reply compares this visit with: before, or another store ("比隔壁店差远了"); not
# any 比 ("比如", "比较", "性价比", "比我上次出差时快").
BEFORE = (
    r"(?:上次|上回|以前|之前|原来|过去|从前|去年|上个月|隔壁(?:店|营业厅)?|别家|别的(?:店|营业厅)"
    r"|其他(?:店|营业厅)|网上)"
)
# A comparison of the network ("信号比之前差", "网速越来越差") is not of the visit.
_NETWORK = "(?:信号|网速|网络|上网|通话)"
NOT_THE_NETWORK = r"(?<!信号)(?<!网速)(?<!网络)(?<!上网)(?<!通话)"
# "Rather" good or bad is a verdict when said of the visit: at the start of a clause or after
# "I think", or of what the visit was (the service, the staff, this time), with the adverbs
# people put between ("服务还是比较好的", "店员也都比较差"). Said of anything else, it is not:
# the network ("网速也比较差", "信号真的有点差"), the customer ("我视力比较差"), the weather.
OF_THE_VISIT = (
    r"(?:(?:^|(?<=[,，。.!！;；\s]))(?:我)?(?:觉得|感觉)?|服务质量|服务态度|服务|态度|体验|素质"
    r"|效率|环境|印象|整体|总体|总的来说|总体来说|店员|营业员|员工|工作人员|这次|这回)"
    r"(?:也|还|还是|真的|都|也都|确实|实在|就|的)*"
)
RATHER = r"(?:挺|蛮|还挺|比较|有点儿?|有一点|有些|相当)"
# What denies a comparison: "不比以前差", "一点也没比上次好".
_DENIED = r"(?:不|没有?|并不|并没有?|也不|也没有?|一点(?:也|都)?(?:不|没))"
# Compared with before or another store, then what it was: "比上次还要" + 差 or 好; _VS when
# the network cannot be what is compared.
_VERSUS = r"比" + BEFORE + r"(?:的)?(?:还|更|要)*"
_VS = NOT_THE_NETWORK + _VERSUS
# The network compared, however the comparison is denied or hedged ("信号不比以前差", "信号还是
# 没比上次好", "网速也并不比以前差", "信号不会比以前差"): set aside before any verdict is read.
_NETWORK_COMPARED = (
    _NETWORK
    + r"(?:还是|又|也|都|根本|其实|真的|并|可|倒|还|会|不|没有?|一点)*"
    + _VERSUS
    + r"(?:差|糟|烂|好|强|快|慢|稳)"
)
# Blame words as thumbs type them too ("disapointed", "aweful", "horible", "terible"): one
# spelling list for the blame and for its negation ("not disapointed").
DISAPPOINTED = r"dis+ap+oi?nt(?:ed|ing)"
TERRIBLE = r"terr?ible|awe?ful|horr?i(?:ble|fic)"
# Negated blame ("不算太差", "not bad", "不比以前差", "没有退步") and negated praise ("not
# great"): side by side they say neither, a 3 (see verdict()).
_NOT_SO_BAD_ZH = (
    r"(?:不算|不是|并不|并不是|没那么|没有那么|不太|不怎么|也不是|还不算|不至于|不觉得|没觉得)"
    r"(?:很|太|那么|特别|比较|有点儿?|挺)?差"
    r"(?!评)|(?<![很太好真超极])不差|差评不至于|"
    + _DENIED
    + _VS
    + r"(?:差|糟|烂)|(?:没有?|并没有?|不会|一点(?:也|都)?没)退步"
)
# "not", "never", "wasn't" and "wasnt" as a phone's keyboard leaves it
NEGATION = r"(?:\bnot|\bnever|n't|\bnt|\b(?:was|is|were|are|did|does|do|had|has|have)nt|\bno)"
# Up to two words between a negation and the word it turns ("not a very good visit",
# "hasn't been great", "not as good as before").
_BETWEEN = (
    r"(?:(?:very|really|too|that|so|at all|entirely|fully|completely|quite|particularly"
    r"|all that|the|a|an|as|been|exactly|super|overly|especially|always|had a|have had a)\s+){0,2}"
)
_NOT_BAD_EN = (
    NEGATION + r"\s+" + _BETWEEN + r"(?:bad|" + TERRIBLE + r"|worst|poor|unhappy|dissatisfied"
    r"|unsatisfied|" + DISAPPOINTED + r")\b"
)
_NOT_GOOD_EN = (
    NEGATION + r"\s+" + _BETWEEN + r"(?:satisfied|happy|good|great|impressed|pleased"
    r"|helpful|nice|best|excellent|perfect|amazing|fantastic|wonderful)\b"
    r"|\b(?:no longer|hardly|barely|scarcely)\s+" + _BETWEEN + r"(?:satisfied|happy|good|great"
    r"|helpful|pleased|nice)\b"
    r"|\b(?:nothing\s+|none of (?:the |them|it|us)?(?:\w+\s+)?)(?:was|were|is|are|went)\s+"
    r"(?:good|great|helpful|nice|right|ok|okay|fine)\b|\bnot (?:one|a single) good thing\b"
    r"|\bnothing good\b"
    r"|\b(?:no\s*one|nobody)\s+(?:was\s+|were\s+|is\s+)?(?:helpful|nice|friendly)\b"
    r"|\b(?:didn't|did not|don't) (?:like|enjoy|love)\b|\bthanks for nothing\b"
    r"|\b(?:would\s*n[o']?t|wouldn't|do\s*n[o']?t|can't|cannot)\s+recommend\b|\bworse than\b"
    r"|\bfar from perfect\b"
)
# A pinyin verdict ends its clause, perhaps with a particle ("hen bucuo a", "hai xing ba").
_PINYIN_END = r"(?:\s*(?:a|ah|de|o|ya|la|ba|le))?\s*$"
# (pattern, score), on the lower-cased, NFKC-normalised reply. At one place the first that
# fits wins, so a negated or scornful form comes before the word it contains.
_CHINESE: list[tuple[str, int]] = [
    # negations of blame: no complaint ("没有不满意的"), not that bad ("不算太差")
    (r"(?:没有?|没什么|没啥|并没有?|谈不上|说不上|算不上|不能说|不是|并不|不算)(?:什么|啥|任何)?"
     r"(?:不满意?|不好(?!意思)|差评)", 4),
    (r"不满意的地方(?:没有?|几乎没有)|唯一(?:的)?不满意", 4),
    (_NOT_SO_BAD_ZH, 3),
    # negated praise: "不是很好", "不推荐" (the double negations above come first)
    (r"(?:不是|没有|不算|并不|一点都不|一点也不|不太|没那么|没有那么)(?:很|特别|太|那么|非常|十分)?"
     r"(?:好(?!意思)|棒|完美|专业|热情|周到|满意|顺利)|不(?:太|会|建议)?推荐|不建议|不给力", 2),
    (r"投诉|气死|无语|离谱|坑爹", 1),
    # compared with before: worse ("比上次差多了", "不如以前"), better ("比上次好多了")
    # a little worse or better than before is the neutral
    (_VS + r"(?:差|好)(?:一点|一些|点|了点|一点点)", 3),
    (_VS + r"(?:差|糟|烂)(?!价|不多)|" + NOT_THE_NETWORK + r"(?:不如" + BEFORE
     + r"(?=$|[了啦呢啊吧\s])|没有?" + BEFORE + r"(?:那么|那样)?好(?!找|用|办|停|走|买)"
     r"|越来越差|一次不如一次|一次比一次差|退步)", 2),
    (_DENIED + _VS + r"(?:好|强|快)"
     r"|" + _VS + r"(?:好|强|快)(?:不到哪|不了多少|不了哪|多少)", 2),
    (_VS + r"(?:好|快|强|方便)", 4),
    # scorn: "满意才怪", "满意个屁", "不错个鬼", "服务好个屁", "怎么可能满意"; "差差差" (not
    # "相差差不多"); not "比这更好是不可能的", praise
    (r"(?:服务|态度|体验|店员|环境)?(?:也|还|真|都)?(?:很|非常)?"
     r"(?:(?:满意|好评)(?:个屁|你个头|个鬼|才怪|才有鬼|是不可能(?!不))|(?:不错|好|棒)(?:个屁|你个头|个鬼|才怪|才有鬼))"
     r"|(?:怎么可能|不可能)满意|(?<!相)差差+", 1),
    (r"(?:不能说|说不上|谈不上|称不上|算不上|离)(?:很|太|非常)?满意", 2),
    (r"不给好评|不会给好评", 2),
    # the dissatisfied
    (r"(?:非常|很|特别|十分|极其|太|超级?)不满意", 1),
    (r"(?:不|没有?)(?:太|大|是很|是太|是特别|是非常|是那么|怎么|够|算|那么|很|十分)?满意", 2),
    (r"(?:很|太|非常|特别|极|真|好|超|极其)差|差劲|差评|垃圾|糟糕|糟透|恶劣|恶心|坑人|破服务"
     r"|(?:太|很|真|超)?烂(?:透)?|失望透顶|(?:很|太|非常|特别|好)失望|再也不(?:来|会来|去)"
     r"|不会再来|(?:一点|一点儿)(?:也|都)不好|(?:很|非常|特别|太)不好(?!意思)|负分", 1),
    (r"不(?:太|怎么|是很)?顺利|失望|(?<!说)不(?:太|怎么|够)?好(?!意思|看|用|找|说|办|停|拿|买|吃)|不怎么样|不咋(?:地|样)"
     r"|(?:^|服务|态度|体验|素质|效率|环境|印象|感觉)(?:也|还|还是|都|很是)?差(?=$|[\s,，.。!！~～了啊吧呀])"
     # rather bad, of the visit: "挺差", "店员比较差", "我觉得有点差" (not "差不多", "差异",
     # "差劲" 1)
     r"|" + OF_THE_VISIT + RATHER + r"差(?!不多|点|劲|评|价|远|距|别|额|异|错|强)"
     r"|(?:这次|现在|今天|这回)(?:真|很|太|就|却)?不行", 2),
    # points of ten as the whole reply ("9分", "打8分"), as "10分" is: halved, rounded up, as
    # "8/10" is; not inside a sentence, where "9分" may be minutes ("等了9分")
    (r"^(?:打|给)?9分(?:吧|啦|了)?$", 5),
    (r"^(?:打|给)?[78]分(?:吧|啦|了)?$", 4),
    (r"^(?:打|给)?6分(?:吧|啦|了)?$", 3),
    # the satisfied: 满意度 rated high or low
    (r"满意度为?[0零]", 1),
    (r"满意度(?:很|非常|特别|比较|挺|极|超)?低|满意度不高", 2),
    (r"满意度(?:满分|100)", 5),
    (r"满意度(?:很|非常|特别|比较|挺|极|超)?高", 4),
    (r"(?:非常|很|特别|十分|超级?|太|相当)满意", 5),
    (r"满意(?!度)", 4),
    (r"(?:非常|很|特别|超级?|真|太|十分)(?:好|棒|赞|不错|周到)(?!意思)|好极了|棒极了|完美|无可挑剔"
     r"|不能更满意|再满意不过|强烈推荐|点赞|(?<![称])赞(?!助|成)|满分|666|好评(?!返)|(?<![0-9.])(?:100|10|一百)分(?!钟|钱|之|制)",
     5),
    # rather good, of the visit ("服务还是比较好的"); not "去别的店比较好" (advice)
    (OF_THE_VISIT + r"比较好(?!奇|像|看|找|用|办|说|吃)|(?:挺|蛮|还挺|真)好|(?:还|挺|蛮)?不错"
     r"|(?:服务|态度|体验)(?:挺|还|蛮)?(?:好|周到)(?!意思)"
     r"|棒|推荐|(?:很|非常|挺|特别|十分)?顺利", 4),
    # the neutral: 一般, not 一般来说 (usually)
    (r"一般般?(?=$|[^\u4e00-\u9fff]|[吧啊呀哦了啦的呗嘛咯哈喔哎般])|中评|还行|还可以|还好"
     r"|马马虎虎|凑合|不好不坏", 3),
]  # fmt: skip
_ENGLISH: list[tuple[str, int]] = [
    # negations: of praise 2, of blame 3 (4 where nothing was wrong at all)
    (r"\b(?:can(?:'t|not)|could(?:n't| not)) (?:complain|be happier|be more satisfied)\b"
     r"|\bno complaints\b|\bnothing to complain\b|\bnothing bad to say\b|\bnot bad at all\b"
     r"|\b(?:nothing|could(?:n't| not)) (?:could )?be better\b"
     r"|\bnever (?:been )?" + DISAPPOINTED + r"\b|\bnever been happier\b"
     r"|\bno problems?(?: at all)?\b"
     r"|\b(?:not|n't) " + DISAPPOINTED + r" at all\b", 5),
    (_NOT_BAD_EN, 3),
    (r"\b(?:far from|anything but) (?:satisfied|happy|good)\b"
     r"|\b(?:give|rate)\s+(?:it|them|you)\s+(?:a\s+)?zero\b", 1),
    (r"\bless than (?:satisfied|happy|helpful|great|good|impressed|pleased)\b"
     r"|\bcan(?:'t|not) say (?:i'm |i am |i was )?(?:satisfied|happy)\b", 2),
    (_NOT_GOOD_EN, 2),
    # Chinese in pinyin, as a phone without a Chinese keyboard writes it ("bu manyi"), with its
    # negations as for the characters, as a whole clause ("hen bucuo a"): not inside a sentence
    # ("yi ban ren", "bu cuo guo"), nor a name ("Manyi Wang", "served by Tai Hao")
    (rf"^\s*mei\s*(?:you\s*)?(?:shen\s*me\s*|sha\s*)?bu\s*(?:man\s*yi|hao){_PINYIN_END}", 4),
    (rf"^\s*(?:bu\s*(?:shi|suan)?|ye\s*bu\s*shi|mei\s*(?:you)?)\s*(?:tai|hen|na\s*me)?\s*cha"
     rf"{_PINYIN_END}", 3),
    (rf"^\s*(?:hen|fei\s*chang|te\s*bie|tai|chao\s*ji?)\s*bu\s*(?:man\s*yi|hao){_PINYIN_END}"
     rf"|^\s*(?:tai|hen|zhen)?\s*(?:cha|la\s*ji)(?:\s*jin)?{_PINYIN_END}", 1),
    (rf"^\s*(?:bu|mei\s*you|mei|ye\s*bu)\s*(?:shi|suan)?\s*(?:tai|hen|da|zen\s*me|gou|na\s*me"
     rf"|te\s*bie|fei\s*chang|shen\s*me)?\s*(?:man\s*yi|hao){_PINYIN_END}", 2),
    (rf"^\s*(?:hen|fei\s*chang|te\s*bie|tai|chao\s*ji?)\s*(?:man\s*yi|hao){_PINYIN_END}", 5),
    # a word alone opens the reply or follows a separator with no space ("Thanks, Manyi" is a name)
    (rf"^(?:ting\s*|man\s*)?(?:man\s*yi|bu\s*cuo){_PINYIN_END}|^(?:ting|man)\s*hao{_PINYIN_END}"
     rf"|^(?:hen\s*)?bu\s*cuo{_PINYIN_END}|^mei\s*(?:you\s*)?wen\s*ti{_PINYIN_END}", 4),
    (rf"^(?:hai\s*(?:xing|ke\s*yi|hao)|yi\s*ban(?:\s*ban)?){_PINYIN_END}", 3),
    # the dissatisfied
    (r"\b(?:very|extremely|totally|completely|really|so|highly|super)\s+"
     r"(?:dis|un)satisfied\b|\b(?:very|extremely|really|so)\s+(?:bad|poor|disappointed|unhappy)\b"
     r"|\b(?:" + TERRIBLE + r")\b|\bworst\b|\bdisgusting\b|\bpathetic\b"
     r"|\buseless\b|\brubbish\b|\bcrap(?:py)?\b|\bunacceptable\b|\bappalling\b|\batrocious\b"
     r"|\bnever again\b|\bwaste of time\b|👎🏻?👎|\bsucks?\b|\bcould(?:n't| not) be worse\b"
     r"|\bgood for nothing\b|\b(?:want|going) to complain\b", 1),
    (r"\b(?:dis|un)satisfied\b|\bunhappy\b|\bbad\b|\bpoor\b|\b" + DISAPPOINTED + r"\b"
     r"|\bmediocre\b|👎|😡", 2),
    # the satisfied, not a greeting
    (r"\b(?:very|extremely|totally|completely|really|so|highly|super)\s+(?:satisfied|happy|good"
     r"|helpful|pleased)\b|\bgreat\b|\bexc?ell?ent\b|\bamazing\b|\bawesome\b|\bperfect\b"
     r"|\bfantastic\b|\boutstanding\b|\bsuperb\b|\bbrilliant\b|\blovely\b|\bwonderful\b"
     r"|\blove[ds]?\b|\bthe best\b", 5),
    (r"\bsatisfied\b|\bhappy\b(?! (?:birthday|new year|holidays?|anniversary))|\bpleased\b"
     r"|\bgood\b(?! (?:morning|afternoon|evening|night|luck|bye|day|one|weekend|week|trip))"
     r"|\bhelpful\b|\bnice\b(?! (?:day|weekend|one|evening))"
     r"|\bdecent\b|\bthumbs up\b|👍|\b(?:would|will|highly|definitely)\s+recommend\b", 4),
    (r"\bneutral\b|\baverage\b|\bso-so\b|\bmeh\b|\bfine\b|\bnothing special\b"
     r"|\b(?:it|service|the visit) was (?:just )?ok(?:ay)?\b"
     r"|\bcould be better\b", 3),
]  # fmt: skip
_VERDICTS = _CHINESE + _ENGLISH
_NOT_BAD = {
    i for i, (pattern, _) in enumerate(_VERDICTS) if pattern in (_NOT_SO_BAD_ZH, _NOT_BAD_EN)
}
_NOT_GOOD = {i for i, (pattern, _) in enumerate(_VERDICTS) if pattern == _NOT_GOOD_EN}
# ASCII: an English word ends where a Chinese one begins ("great服务")
_VERDICT = re.compile(
    "|".join(f"(?P<v{i}>{pattern})" for i, (pattern, _) in enumerate(_VERDICTS)), re.ASCII
)
# A clause ends at a comma, a full stop, a semicolon, or a question or exclamation mark.
_CLAUSE = re.compile(r"[^,，.。!！;；?？]+[?？]?")
# Words that suppose: what follows them did not happen ("如果快一点", "if it were faster").
SUPPOSING = r"如果|要是|要不是|假如|\bif\b"
# A clause that asks, wishes, supposes, says what was nearly or first meant, or is unsure.
_NO_VERDICT_IN = re.compile(
    rf"[?？吗]|{SUPPOSING}|希望|但愿|祝|本来|原本|差点|想给"
    r"|\b(?:would(?!\s*(?:n[o']?t\s+)?recommend)|hope|wish|not sure|unsure)\b"
)
# Asking for reviews, a courtesy: their words are no verdict.
_NOT_VERDICTS = re.compile(
    r"[求要刷]好评|好评返现|说好的好评|不好意思|\bhave a (?:good|nice|great)\b|" + _NETWORK_COMPARED
)


# The network named beside what the visit was ("服务和信号都比以前好", "信号和态度都比之前差"):
# the comparison is of the visit too, so the network is left out of the subject.
_VISIT_AND_NETWORK = re.compile(
    r"(服务体验|服务|态度|店员|营业员|员工|环境|效率)(?:和|跟|与|、|以及)"
    + _NETWORK
    + r"|"
    + _NETWORK
    + r"(?:和|跟|与|、|以及)(?=服务|态度|店员|营业员|员工|环境|效率)"
)


def verdict(lowered: str) -> int | None:
    """The score of the verdicts said in a reply, when they agree (see the module's note)."""
    lowered = _VISIT_AND_NETWORK.sub(r"\1", lowered.replace("\u2019", "'"))
    said = [
        int(found.lastgroup[1:])
        for clause in _CLAUSE.findall(_NOT_VERDICTS.sub(" ", lowered))
        if not _NO_VERDICT_IN.search(clause)
        for found in _VERDICT.finditer(clause)
        if found.lastgroup
    ]
    neither = bool(_NOT_BAD.intersection(said)) and bool(_NOT_GOOD.intersection(said))
    scores = [3 if neither and i in _NOT_GOOD else _VERDICTS[i][1] for i in said]
    if not scores:
        return None
    if max(scores) <= 3:
        return min(scores)
    if min(scores) < 3:
        return None
    # praise beside a neutral word ("一般般，不过态度很好") is a notch below the praise alone
    return max(scores) - 1 if min(scores) == 3 else max(scores)
