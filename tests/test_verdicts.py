"""A verdict in words (feedback/verdicts.py), read through the parser as every channel reads a
reply: the dissatisfied who wrote "垃圾" or "terrible" got no rating, so no second round and
no case; negations, scorn and questions turned around would open cases for the satisfied."""

import pytest

from feedback.parsing import ParsedReply, parse_reply


@pytest.mark.parametrize(
    ("text", "score"),
    [
        # blame
        ("垃圾", 1),
        ("很失望", 1),
        ("什么破服务", 1),
        ("再也不来了", 1),
        ("失望", 2),
        ("服务差", 2),
        ("服务挺差的", 2),
        ("比较差", 2),
        ("有点差", 2),
        ("体验挺差", 2),
        ("挺差劲", 1),
        ("我觉得比较差", 2),
        ("服务质量比较差", 2),
        ("店员比较差", 2),
        ("营业员有点差", 2),
        ("这次比较差", 2),
        ("服务还是比较差", 2),
        ("排队太久，比较差", 2),
        ("服务比较好", 4),
        ("店员态度比较好，很耐心", 4),
        ("整体比较好", 4),
        ("服务还是比较好的", 4),
        ("总体来说比较好", 4),
        ("服务也都比较好", 4),
        ("服务比较好但是网速有点差", 4),  # the network's is none
        ("不算比较差", 3),  # rather bad denied, as 不算太差
        ("我不觉得有点差", 3),
        ("不好", 2),
        ("不怎么样", 2),
        ("Terrible", 1),
        ("never again", 1),
        ("Worst service ever", 1),
        ("bad", 2),
        ("not great", 2),
        ("wasn't good", 2),
        ("didn't like it", 2),
        ("👎", 2),
        # praise
        ("很好", 5),
        ("挺好的", 4),
        ("不错", 4),
        ("服务很周到", 5),
        ("great", 5),
        ("love it", 5),
        ("Good service", 4),
        ("👍", 4),
        # the neutral, with the particles people end it with
        ("还行", 3),
        ("一般啦", 3),
        ("一般😐", 3),
        ("一般般嘛", 3),
        ("so-so", 3),
        ("fine", 3),
        # the satisfaction rated
        ("满意度很低", 2),
        ("满意度不高", 2),
        ("满意度很高", 4),
        ("满意度满分", 5),
        # points of ten as the whole reply, as "10分" and "9/10" are read (no rating before)
        ("9分", 5),
        ("打8分", 4),
        ("7分", 4),
        ("6分", 3),
        # negations of blame: no complaint is no case
        ("没有不满意的", 4),
        ("没什么不满意的", 4),
        ("不是不满意，就是等太久", 4),
        ("唯一不满意的是停车", 4),
        ("不满意的地方没有", 4),
        ("not unhappy", 3),
        ("不算太差", 3),
        ("也不是很差", 3),
        ("差评不至于", 3),
        ("not bad", 3),
        ("not bad at all", 5),
        ("can't complain", 5),
        # negated or scornful praise
        ("我很满意才怪", 1),
        ("满意个屁", 1),
        ("不错个鬼", 1),  # rated 4
        ("5分？开什么玩笑", 1),  # rated 5
        # the visit compared beside the network: none, as the network's alone is
        ("服务和信号都比以前好", 4),
        ("信号和服务都比以前好", 4),
        ("态度、网速都比之前差", 2),
        ("5分！开什么玩笑，这么快就办好了", 5),  # amazement: after "！"
        ("5分，你们别逗了，真好", 5),  # praise after it
        ("5分？别逗了，差评", 1),
        ("5分？开什么玩笑，态度这么差", 1),
        ("5分?你在逗我,排队一小时", 1),
        ("5分，开什么玩笑，太差了", 1),  # blame after it
        ("5分，逗我笑了，店员很幽默", 5),  # a joke about something else
        ("4分，想得美的话给5分", 4),
        ("好评是不可能不给的", 5),
        ("环境和信号都比之前好", 4),
        ("效率和网速都比以前差", 2),
        ("好评是不可能的", 1),
        ("给你们好评是不可能的", 1),
        ("好评个鬼", 1),  # rated 5
        ("好个屁", 1),
        ("差差差", 1),
        ("两家店价格相差差不多一百块，服务还行", 3),  # 相差, a difference: not 差差
        ("服务好个屁", 1),
        ("态度好个屁，爱答不理", 1),
        ("服务好才怪，排了一小时", 1),
        ("zero", 1),
        ("Zero stars", 1),
        ("Zero. Nothing to complain about", 5),  # zero is the whole reply's only
        ("服务已经很好了，要比这更好是不可能的", 5),
        ("I'd give it zero", 1),
        ("不能说满意", 2),
        ("谈不上满意", 2),
        ("离满意还差得远", 2),
        ("far from satisfied", 1),
        ("anything but satisfied", 1),
        ("less than satisfied", 2),
        ("I can't say I'm satisfied", 2),
        # nothing, none, no longer, hardly: read as praise, 4, with no case opened
        ("nothing was good", 2),
        ("nothing good about it", 2),
        ("not one good thing", 2),
        ("none of the staff were helpful", 2),
        ("none of it was good", 2),
        ("no longer happy", 2),
        ("hardly satisfied", 2),
        ("barely satisfied", 2),
        ("nothing bad to say", 5),
        ("Nothing could be better", 5),
        ("couldn't be better", 5),
        ("不给好评", 2),
        # negated blame beside negated praise is neither; traditional characters read too
        ("Not great, not terrible", 3),
        ("It wasn't bad but it wasn't good either", 3),
        ("I was not disappointed at all", 5),
        ("不能说不满意吧", 4),
        ("沒有不滿意的", 4),
        ("不滿意", 2),
        ("服務態度很差", 1),
        # negated praise, complaints and refusals to recommend (an attack pass: "不是很好" was 5)
        ("不是很好", 2),
        ("态度不是很好", 2),
        ("不推荐", 2),
        ("不会推荐给朋友", 2),
        ("not the best", 2),
        ("not perfect", 2),
        ("nobody was helpful", 2),
        ("would not recommend", 2),
        ("worse than last time", 2),
        ("我要投诉", 1),
        ("无语了", 1),
        ("it sucks", 1),
        ("could be better", 3),
        ("would recommend", 4),
        # a clause that only meant to: the verdict that was given
        ("本来想给差评的，后来店长处理得很好", 5),
        # agreeing verdicts: the strongest; praise beside a neutral word a notch below it
        ("不太满意，也很差", 1),
        ("很满意，服务很好", 5),
        ("一般般，不过小姐姐态度很好", 4),
        # compared with before, leaving for another operator
        ("比上次差多了", 2),
        ("一次不如一次", 2),
        ("服务比以前好多了", 4),
        # misspelt, and Chinese in pinyin from a phone without a Chinese keyboard
        ("disapointed", 2),
        ("Dissapointed with the wait", 2),
        ("aweful", 1),
        ("bu manyi", 2),
        ("hen bu manyi", 1),
        ("feichang manyi", 5),
        ("bucuo", 4),
        ("hai xing ba", 3),
        ("ting hao de", 4),
        ("mei wenti", 4),
        ("henbucuo", 4),
        # compared with before or with another store, not coming back, leaving
        ("没有上次好", 2),
        ("比隔壁店差远了", 2),
        ("it was ok", 3),
        # a whole reply of one word
        ("好", 4),
        ("0", 1),
    ],
)
def test_a_verdict_in_words_is_the_rating(text, score):
    assert (parse_reply(text).intent, parse_reply(text).score) == ("rating", score)


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("5分，开什么玩笑，这么快就办好了", 5),  # amazement
        ("5分，开什么玩笑，必须5分", 5),
        ("5，你们在逗我吗，怎么这么快", 5),
        ("5分...开什么玩笑", 1),  # mocked, and nothing else said
        ("5,开什么玩笑,一小时", 1),
        ("5分？逗我玩呢", 1),
        ("5分，你逗我的吧，等了一个小时", 1),
        ("5分，你们在逗我吗，服务这么差", 1),
        ("5！开什么玩笑，态度这么差", 1),  # blame after it, whatever the mark
        ("5分，开什么玩笑，排队两个小时，给1分", 1),
        ("5分，逗我的小孩玩，很有耐心", 5),  # a joke about something else
    ],
)
def test_a_score_mocked_is_scorn_and_marvelled_at_is_kept(text, score):
    """An earlier version read no rating where it could not tell, and lost the 1 a customer
    gave after it; one before read scorn only with "？" and blame it knew as a verdict."""
    assert parse_reply(text).score == score


@pytest.mark.parametrize("text", ["5 店员很会开玩笑", "4 you're kidding, so fast!"])
def test_a_joke_beside_a_score_is_no_scorn_of_it(text):
    assert parse_reply(text).score == int(text[0])


def test_a_reply_that_goes_on_from_its_rating_word_is_its_whole_comment():
    assert parse_reply("满意才怪") == ParsedReply("rating", 1, "满意才怪")
    assert parse_reply("一般般，不过态度很好").comment == "一般般，不过态度很好"
    assert parse_reply("很不满意，服务太差").comment == "服务太差"  # the word set apart


@pytest.mark.parametrize(
    "text",
    [
        # asking for reviews, a courtesy, greetings: their words are no verdict
        "说好的好评返现呢",
        "又来要好评",
        "天天求好评，烦",
        "不好意思，问一下",
        "happy birthday, thanks",
        "good morning",
        # a clause that asks, supposes or nearly happened
        "满意吗？",
        "要不是态度好，我就给1分了",
        "差点就满意了",
        "Not sure I'm satisfied",
        "would be great if it were faster",
        "Thanks, have a good one",
        "不要退订",  # a refusal to unsubscribe: no opt-out, no verdict
        "等了9分",  # minutes, said short
        "比这更好是不可能的",  # praise, not scorn
        "9分钟",
        "我要退订这个套餐",  # a plan, not our messages
        "说不好",
        "TD是什么意思",
        # verdicts that disagree: which weighs more is the customer's to say
        "以前很满意，现在不行了",
        "网速太差了 但营业员态度很好",
        "服务满意，价格不满意",
        # 差 and 一般 as other words
        "5G信号差",
        "5G信号有点差",
        "5G有点差",  # the network, however it is said
        "网比较差",
        "通话质量有点差",
        "室内信号覆盖比较差",
        "不是比较好",
        "网速也比较差",  # the network, with words between
        "信号真的有点差",
        "网速感觉有点差",
        "宽带有点差",
        "我视力比较差，看不清短信",  # the customer, not the visit
        "今天心情有点差",
        "天气比较差",
        "价格有些差异",  # 差 as another word
        "还是去别的店比较好",  # "better to": advice, often a complaint, not praise
        "早知道不来比较好",
        "比较好奇你们为什么不回电话",
        "差不多吧",
        "出差回来办的业务",
        "我一般下午去",
        # porting in, the phone's own network settings
        "从联通携号转网过来的",
        "好的",  # okay, not good
        "比起别家差不多",  # about the same as elsewhere
    ],
)
def test_no_verdict_is_read_where_a_careful_reader_finds_none(text):
    assert parse_reply(text).intent == "unknown"


@pytest.mark.parametrize(
    ("text", "score"),
    [
        # negations of the pinyin, the misspellings, the comparisons, as of the characters
        ("bu shi tai manyi", 2),
        ("bu tai hao", 2),
        ("bu suan tai cha", 3),
        ("bu zenme manyi", 2),
        ("mei you manyi", 2),
        ("mei you bu manyi de", 4),
        ("fei chang bu manyi", 1),
        ("not disapointed at all", 5),
        ("wasnt dissapointed", 3),
        ("not aweful", 3),
        ("it wasnt great", 2),
        ("不比以前差", 3),
        ("没有比以前差，放心", 3),
        ("并不比以前好", 2),
        ("比上次好不了多少", 2),
        ("这次比上次还要好！", 4),
        ("这次比上次差一点，但是还可以", 3),  # a little worse: the neutral
        ("比上次好一点点，问题还是没解决", 3),
        # staying is no blame: the rest of the reply says how it went
        ("不想转网，服务挺好的", 4),
        ("我已经携号转网过来了，很满意", 5),
    ],
)
def test_a_negated_word_is_turned_whatever_its_spelling(text, score):
    assert (parse_reply(text).intent, parse_reply(text).score) == ("rating", score)


@pytest.mark.parametrize(
    "text",
    [
        "Thanks, Manyi",  # a given name
        "served by Tai Hao",
        "搬家了，下次不来了",  # moved house
        "这次办卡比我上次出差时快多了",  # 比 of 出差, not a comparison with before
        "比如信号差的问题能不能解决",
        "没有比这更好的服务了",  # nothing better: praise no rule reads, never blame
        "不会转网的，放心",
        "想转网到这边，问了一下",  # coming to us
        "老婆打算转网，我来问问流程",  # someone else's plan, no verdict
        "问题一次解决，以后不来了",  # no need to come back
        "信号比之前差很多，小王帮我换了张新卡，现在正常了",  # the network, not the visit
        "信号不比以前差，就是套餐贵",  # the network, negated: still not the visit
        "网速和信号都比以前差",  # the network twice
        "上网体验和网速都比以前差",  # the network's experience
        "网速并不比之前差",
        "信号也没比上次好",
        # hedged or denied with a word between ("still", "again", "at all", "won't")
        "信号还是没比上次好",
        "网速还是没有比以前快",
        "信号不会比以前差",
        "网速也并不比以前差",
        "信号根本不比以前差",
        "我手机信号越来越差，店员帮我重新设置了一下",
        "店面装修后没有以前那么好找了",  # harder to find, not worse
        "Hi this is Li Manyi from the 3rd floor",
        "yi ban ren dou bu hui lai",  # 一般人都不会来: no verdict
        "bu cuo guo ren he you hui",  # 不错过任何优惠
    ],
)
def test_pinyin_inside_a_sentence_a_name_or_staying_reads_as_no_verdict(text):
    assert parse_reply(text).intent == "unknown"


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("请对我的号码停止发送短信", "opt_out"),  # asked, of the number
        ("麻烦给我手机停止发送这类信息", "opt_out"),
        ("请让系统停止推送", "opt_out"),
        ("手机停止推送", "opt_out"),
        # said of the phone, a request as often as a fault: read as the request, which is
        # the safe side ("这个手机停止推送了", "本手机停止发送短信了，谢谢配合")
        ("这个手机停止推送了", "opt_out"),
        ("手机停止发送短信了", "opt_out"),
    ],
)
def test_a_request_to_stop_said_of_the_phone_stays_an_opt_out(text, intent):
    assert parse_reply(text).intent == intent


@pytest.mark.parametrize(
    ("text", "score"),
    [
        # two words between the negation and the praise it turns ("a", "as", "been", …)
        ("Not a great experience", 2),
        ("Hasn't been great lately", 2),
        ("Not as good as before", 2),
        ("I'm not exactly happy", 2),
        ("Less than helpful", 2),
        ("not a bad visit", 3),
    ],
)
def test_a_negation_turns_praise_a_few_words_on(text, score):
    assert (parse_reply(text).intent, parse_reply(text).score) == ("rating", score)


@pytest.mark.parametrize("text", ["再发我就投诉12315", "再发就投诉", "再来电话我就投诉"])
def test_a_threat_to_complain_if_we_send_again_opts_out_and_rates_low(text):
    """'Send again and I complain' asks us to stop, however it is put: it was a rating of 1
    only, a case opened and the messages went on."""
    parsed = parse_reply(text)
    assert (parsed.intent, parsed.score) == ("opt_out", 1)
