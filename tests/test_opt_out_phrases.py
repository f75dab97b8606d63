"""Opt-outs as people write them: one table of phrases, read by the parser, the CLI and the
signed SMS webhook alike, and the ratings that merely contain the letters.

Every opt-out below must stop us (texts and automated calls) and must never be answered with a
survey question; every rating below stays a rating.
"""

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from cases.collect import collect
from feedback.parsing import parse_reply
from tests.factories import add_action, add_store, add_subscriber
from tests.service_helpers import sid, sms_form, twilio_post

# (reply, the rating given with it). ZWSP = zero-width space, NBSP = non-breaking space.
OPT_OUTS: list[tuple[str, int | None]] = [
    # 退订 of our messages with a word for a service after it: read as a pack, no opt-out
    ("我要退订你们的短信业务", None),
    ("退订短信业务", None),
    ("退订营销短信", None),
    # plain requests that were missed
    ("请勿再传送", None),  # 請勿再傳送, folded
    ("别再给我推销了", None),
    # it has not been done, or else: asked already, no refusal
    ("为什么还没给我退订", None),
    ("怎么还不给我退订", None),
    ("你们还没有帮我退订吗", None),
    ("为什么还没退订", None),
    ("不给我退订我就投诉你们", 1),
    ("再不给我退订就投诉到工信部", 1),
    ("天天发这种短信，谁还不想退订？", None),  # who would not: a question, no refusal
    ("你们不退订我就投诉", 1),
    ("再不退订就投诉到工信部", 1),
    ("说了几次都没退订", None),
    ("为何没退订", None),
    ("迟迟不退订，天天发", None),
    ("我要退订 你们的短信业务", None),
    ("别推销了 谢谢", None),
    ("别推销了吧", None),
    # a request to stop selling, whoever it names: not one that names what was sold
    ("经理别推销了", None),
    ("小哥，别推销了好吗", None),
    ("店员很好，但是你们别再推销了好吗", 5),
    ("希望店员不要推销了谢谢 4分", 4),
    ("退订短信里全是套餐广告", None),
    # 不退订 and 没退订 that are not the customer's own decision: asking, not refusing
    ("说了N遍了，你们到底退不退订", None),
    ("天天发广告，不得不退订", None),
    ("如果不退订我要投诉", None),  # supposes: no rating
    ("发了好几次也没退订", None),
    ("仍然没退订", None),
    ("你们就是不退订", None),
    ("我没退订成功，还在收短信", None),
    ("你們遲遲不退訂", None),
    ("不退订的话我就去投诉", 1),
    # 推销 with the politeness after it, or a thing sold
    ("别推销了好吗", None),
    ("别给我推销了谢谢", None),
    ("别给我推销东西了", None),
    ("不要再推销任何东西", None),
    # our messages, whoever sent them
    ("我要退订你们发的短信业务", None),
    ("退订本店的短信业务", None),
    ("退订关怀短信业务", None),
    ("退订该号码的短信业务", None),
    # Twilio's keywords, as typed
    ("STOP", None),
    ("stop", None),
    ("STOP.", None),
    ("STOP!", None),
    ("Stop!!!", None),
    ("sToP", None),
    ("quit!", None),
    ("End.", None),
    ("CANCEL", None),
    ("unsubscribe", None),
    ("STOPALL", None),
    ("stop all", None),
    ("revoke", None),
    ("opt-out", None),
    ("opt out", None),
    ("\u200bSTOP", None),  # ZWSP before
    ("STOP\u200b", None),  # ZWSP after
    ("\u00a0stop\u00a0", None),  # NBSP around
    ("ＳＴＯＰ", None),  # full-width
    ("ｓｔｏｐ。", None),  # full-width, Chinese full stop
    ("Stop, please", None),
    # disguised or spelled out (found by an attack pass)
    ("Ѕtор.", None),  # Cyrillic look-alikes: Ѕ, о, р
    ("SТОР", None),  # Cyrillic Т, О, Р after a Latin S
    ("S T O P", None),
    ("S.T.O.P", None),
    ("s-t-o-p", None),
    ("s t o p please", None),
    ("S̶T̶O̶P", None),  # combining strike-through
    ("🛑", None),  # the stop sign
    ("unsub", None),
    ("arrêt", None),
    ("Basta", None),
    ("стоп", None),
    ("勿扰", None),
    ("拉黑", None),
    ("停", None),
    # English sentences
    ("Stop texting me", None),
    ("please stop texting me", None),
    ("please\u00a0stop\u00a0calling me", None),
    ("unsubscribe me", None),
    ("Unsubscribe me from this list please", None),
    ("cancel my subscription", None),
    ("end these texts", None),
    ("quit texting me", None),
    ("opt me out", None),
    ("don't text me again", None),
    ("Don’t call me again", None),  # a phone's curly apostrophe
    ("do not contact me", None),
    ("no more messages please", None),
    ("remove me from your list", None),
    ("leave me alone", None),
    # Chinese
    ("退订", None),
    ("退订。", None),
    ("请退订", None),
    ("TD", None),
    ("td", None),
    ("T", None),
    ("TD 退订", None),
    ("回复TD退订", None),  # our own opt-out line sent back
    ("ＴＤ", None),
    ("取消订阅", None),
    ("不要再发了", None),
    ("别再发了", None),
    ("不要再给我发短信了", None),
    ("请勿打扰", None),
    ("停止", None),
    # requests in other words, and typos (found by a review of 1,307 replies)
    ("以后别联系我了", None),
    ("不要联系我", None),
    ("不想收到这种短信", None),
    ("我不想再收到你们的短信", None),
    ("取消短信通知", None),
    ("关闭短信提醒", None),
    ("怎么取消这个短信", None),
    ("把我号码删了", None),
    ("别烦我", None),
    ("别给我发这些了", None),
    ("别再来短信了", None),
    ("不要再给我推送了", None),
    ("停发", None),
    ("回复TD", None),  # our opt-out line copied back without its 退订
    ("退定", None),  # 退订's homophone
    ("Do not text this number", None),
    ("Remove my number", None),
    ("Please delete my number", None),
    ("lose my number", None),
    ("Remove", None),
    ("I don't want these texts", None),
    ("I don't want these messages anymore", None),
    ("enough with the texts", None),
    ("Please don't send me surveys", None),
    ("Quit it", None),
    ("Unsubcribe", None),
    ("unsubscibe", None),
    ("stopp", None),
    # a second review, on 1,256 new replies: surveys declined, TD beside words, traditional
    # characters, the words as thumbs and input methods type them
    ("不需要回访，谢谢", None),
    ("拒绝回访", None),
    ("不再接收此类短信", None),
    ("请停止给我发送短信", None),
    ("以后这类短信就不用发了", None),
    ("请把我加入免打扰名单", None),
    ("把我从名单里删掉", None),
    ("已屏蔽", None),
    ("别问了", None),
    ("回td", None),
    ("td了", None),
    ("TD TD TD", None),
    ("T.D.", None),
    ("态度差，TD", 2),
    ("退訂", None),
    ("請不要再傳簡訊給我", None),
    ("服務很差，退訂", 1),
    ("tuiding", None),
    ("别再text我了", None),
    ("ST0P!!", None),
    ("stpo", None),
    ("I'm unsubscribing", None),
    ("Opted out", None),
    ("no more msgs", None),
    ("Do not text", None),
    ("pls dnt text me", None),
    ("I no longer wish to receive messages from you", None),
    ("Cease and desist", None),
    ("End all communication", None),
    ("I don't want to receive your messages", None),
    ("take my number off your list", None),
    ("delete me", None),
    ("arrête", None),
    # a rating and an opt-out: the opt-out wins, the rating is kept
    ("1 别烦我", 1),
    ("1 stop", 1),
    ("5 退订", 5),
    ("2 STOP!", 2),
    ("３ 请退订", 3),
    ("4, unsubscribe", 4),
    ("1 排队太久了，别再发了", 1),
]

# (reply, score, comment): comments that merely contain an opt-out word's letters.
STAY_RATINGS: list[tuple[str, int, str | None]] = [
    ("I stopped at the store 4", 4, "I stopped at the store"),
    ("endless queue 2", 2, "endless queue"),
    ("cancelled my old plan, staff were kind 4", 4, "cancelled my old plan, staff were kind"),
    ("backend fine 5", 5, "backend fine"),
    ("停车不方便 3", 3, "停车不方便"),
    ("2 the end of the queue never moved", 2, "the end of the queue never moved"),
    ("3 had to cancel my order twice", 3, "had to cancel my order twice"),
    ("5 quite good", 5, "quite good"),
    ("4 trending up", 4, "trending up"),
    ("1 不要发票也要等半天", 1, "不要发票也要等半天"),
    ("2 退定金等了一周", 2, "退定金等了一周"),  # a deposit refunded, not 退订
    ("4 removed my old SIM quickly", 4, "removed my old SIM quickly"),
    (
        "店员帮我取消短信提醒业务，很快 5",
        5,
        "店员帮我取消短信提醒业务，很快",
    ),  # a service cancelled
    # a plan or a pack unsubscribed at the store, and a refusal, ask nothing of our messages
    ("退订了流量包还在扣费 1", 1, "退订了流量包还在扣费"),
    ("流量包退订不了，很不满意", 1, "流量包退订不了，很不满意"),
    ("I won't unsubscribe, 5", 5, "I won't unsubscribe"),
    ("TD-LTE信号太差了 2", 2, "TD-LTE信号太差了"),  # a network standard, not TD
    ("please no more long queues 2", 2, "please no more long queues"),
    (
        "I opted out of the device insurance but they charged me 1",
        1,
        "I opted out of the device insurance but they charged me",
    ),
    ("想退订彩铃业务，店员说办不了 1", 1, "想退订彩铃业务，店员说办不了"),
    # a pack unsubscribed with words between, and refusals with words between: no opt-out
    ("帮我退订了不需要的增值业务，很满意 5", 5, "帮我退订了不需要的增值业务，很满意"),
    ("不要给我退订 5", 5, "不要给我退订"),
    ("我没有要退订 5", 5, "我没有要退订"),
    ("不想退订短信 4", 4, "不想退订短信"),
    ("退订了短信套餐 4", 4, "退订了短信套餐"),  # an SMS bundle, not our messages
    ("店里信号被屏蔽了 3", 3, "店里信号被屏蔽了"),
    ("店员说不用发愁 5", 5, "店员说不用发愁"),
    ("号码被列入黑名单 2", 2, "号码被列入黑名单"),
    ("Please don't stop the discount 5", 5, "Please don't stop the discount"),
    ("不想再来了，太差", 1, "不想再来了，太差"),  # not coming back is no request to stop
    (
        "不想打电话给客服所以来了营业厅，处理很快，满意",
        4,
        "不想打电话给客服所以来了营业厅，处理很快，满意",
    ),
]

SURVEY_QUESTIONS = ("请回复数字1-5", "Please reply with a number", "回复1-5", "Reply 1-5")


# Our messages named near 退订 or 推销 in a reply about the visit: a pack or a plan cancelled
# with a message about it, the staff's selling. No opt-out (they were read as one).
NOT_OPT_OUTS = [
    "营业员帮忙退订套餐 回访电话态度也好 5",
    "退订套餐挺快的 评价5分",
    "退订会员后收到了通知，服务很好",
    "退订会员 很快 收到短信确认 5分",
    "退订套餐的确认短信已经收到",
    "我退订了套餐还收到扣费短信",
    "店员别再推销会员卡了，3分",
    "服务还行就是别再给我推销办卡了",
    "希望店员不要推销太多 4分",
    # not yet: a refusal, 还 or not
    "我还不想退订",
    "暂时还不想退订",
    "还不用退订",
    "我还没有打算退订",
    "我还不要退订，继续发",
    "态度很好，我还不想退订",
    "我不退订",
    "5分，不退订",
    # a pack named in a message is the pack's
    "我想退订一下短信里的流量包",
    "退订上次电话里的套餐",
    "请帮我退订下面短信里的业务",
    "我暂时不退订",
    "我还是不退订了",
    "我们不退订",
    "还是不退订了，挺有用的",
    "我才不退订呢",
    "怎么退订短信里推荐的流量包",
    "帮我退订一下短信里那个彩铃",
]


@pytest.mark.parametrize("text", NOT_OPT_OUTS)
def test_a_reply_about_a_pack_or_the_staffs_selling_is_no_opt_out(text):
    assert parse_reply(text).intent != "opt_out"


@pytest.mark.parametrize(("text", "score"), OPT_OUTS)
def test_the_parser_reads_the_opt_out(text, score):
    parsed = parse_reply(text)
    assert (parsed.intent, parsed.score) == ("opt_out", score)


@pytest.mark.parametrize(("text", "score", "comment"), STAY_RATINGS)
def test_a_rating_that_merely_contains_the_letters_stays_a_rating(text, score, comment):
    assert parse_reply(text) == parse_reply(text).__class__("rating", score, comment)


def test_the_cli_reads_replies_with_the_same_parser():
    from careloop.cli import app

    for text, score in [("STOP.", None), ("1 stop", 1)]:
        result = CliRunner().invoke(app, ["replies", "parse", text])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["intent"] == "opt_out"
        assert json.loads(result.output)["score"] == score


@pytest.mark.parametrize(
    "text", ["-1", "-5 太差了", "--- 2", "-", "-- 3", "--score 3", "--中文 差"]
)
def test_the_cli_takes_a_reply_that_starts_with_a_dash_as_its_text(text):
    from careloop.cli import app

    result = CliRunner().invoke(app, ["replies", "parse", text])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == parse_reply(text).as_dict()


@pytest.mark.parametrize(
    "text", ["--debug", "--version", "--format=json", "--install-completion", "--debug "]
)
def test_a_reply_like_a_long_option_is_refused_unless_given_after_dashes(text):
    """A misplaced option (careloop --debug replies parse ...) is told, not parsed as a
    customer's words; after -- it is their words (a -- after it does not count)."""
    from careloop.cli import app

    refused = CliRunner().invoke(app, ["replies", "parse", text])
    assert refused.exit_code == 2 and "put -- before it" in refused.output, refused.output
    dashes_after = CliRunner().invoke(app, ["replies", "parse", text, "--"])
    assert dashes_after.exit_code == 2 and "put -- before it" in dashes_after.output
    taken = CliRunner().invoke(app, ["replies", "parse", "--", text])
    assert taken.exit_code == 0, taken.output
    assert json.loads(taken.output) == parse_reply(text).as_dict()


def _phone(n: int, text: str) -> str:
    """Chinese replies from Chinese numbers (answered in zh-CN), the rest from US ones."""
    return f"+86138{n:08d}" if not text.isascii() else f"+1212555{n:04d}"


def test_each_opt_out_through_the_signed_webhook_opts_out(service, con):
    client, inbox, _ = service
    add_store(con)
    sent = datetime.now(UTC) - timedelta(hours=1)
    answers = {}
    for n, (text, _) in enumerate(OPT_OUTS, start=1):
        phone = _phone(n, text)
        add_subscriber(con, f"S{n}", phone=phone)
        add_action(con, f"A{n}", f"S{n}", recipient=phone, sent_at=sent, sender="+15550001111")
        request = twilio_post("/webhooks/twilio/sms", sms_form(sid("SM", n), phone, text))
        answer = client.post("/webhooks/twilio/sms", **request)
        assert answer.status_code == 200
        answers[text] = answer.text
    asked = {text: a for text, a in answers.items() if any(q in a for q in SURVEY_QUESTIONS)}
    assert asked == {}  # never a survey question to someone who asked us to stop
    thanked = {t: a for t, a in answers.items() if "感谢" in a or "sorry" in a or "抱歉" in a}
    assert thanked == {}
    confirmed = {t for t, a in answers.items() if "您已退订" in a or "unsubscribed" in a}
    # Twilio answers its own single keywords on long codes; we confirm every other opt-out.
    assert confirmed == {t for t, _ in OPT_OUTS if t.strip().lower() not in TWILIO_ANSWERS}

    collect(con, inbox, reply_window=timedelta(hours=72))
    got = {
        action: (intent, score)
        for action, intent, score in con.execute(
            "SELECT action_id, intent, score FROM evaluations"
        ).fetchall()
    }
    assert got == {f"A{n}": ("opt_out", score) for n, (_, score) in enumerate(OPT_OUTS, 1)}
    opted = set(con.execute("SELECT subscriber_id, channel FROM active_opt_outs").fetchall())
    # one phone, one consent: the text opts out of automated calls to that number too
    phone = ("sms", "voice")
    assert opted == {(f"S{n}", ch) for n in range(1, len(OPT_OUTS) + 1) for ch in phone}


TWILIO_ANSWERS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit"}


def test_ratings_with_the_letters_through_the_signed_webhook_stay_ratings(service, con):
    client, inbox, _ = service
    add_store(con)
    sent = datetime.now(UTC) - timedelta(hours=1)
    for n, (text, score, _) in enumerate(STAY_RATINGS, start=1):
        phone = _phone(n, text)
        add_subscriber(con, f"S{n}", phone=phone)
        add_action(con, f"A{n}", f"S{n}", recipient=phone, sent_at=sent, sender="+15550001111")
        request = twilio_post("/webhooks/twilio/sms", sms_form(sid("SM", n), phone, text))
        answer = client.post("/webhooks/twilio/sms", **request).text
        sorry = any(word in answer for word in ("抱歉", "sorry"))
        assert sorry == (score <= 2) and ("感谢" in answer or "Thank you" in answer), (text, answer)
        assert not any(promise in answer for promise in ("联系", "in touch")), answer
    collect(con, inbox, reply_window=timedelta(hours=72))
    got = {
        action: (intent, score, comment)
        for action, intent, score, comment in con.execute(
            "SELECT action_id, intent, score, comment FROM evaluations"
        ).fetchall()
    }
    assert got == {
        f"A{n}": ("rating", score, comment)
        for n, (_, score, comment) in enumerate(STAY_RATINGS, start=1)
    }
    assert con.execute("SELECT count(*) FROM opt_outs").fetchone() == (0,)


def test_after_an_opt_out_no_reply_is_answered_with_a_survey_question(service):
    client, _, _ = service

    def reply(n, body, sender="+12125550100"):
        request = twilio_post("/webhooks/twilio/sms", sms_form(sid("SM", n), sender, body))
        return client.post("/webhooks/twilio/sms", **request).text

    assert "unsubscribed" in reply(1, "STOP.")
    assert "<Message>" not in reply(2, "who is this?")  # not "Please reply with a number"
    assert "您已退订" in reply(3, "退订", "+8613800000077")  # we confirm...
    assert "<Message>" not in reply(4, "什么意思", "+8613800000077")  # ...then never a survey
    reply(5, "START")
    assert "Please reply with a number" in reply(6, "huh?")  # opted back in: asked again


def test_a_dissatisfied_customer_who_also_opts_out_gets_a_case_and_no_message(con, settings):
    """ "1 排队太久了 退订" rated the visit 1 and asked us to stop: the rating was kept on the
    evaluation only, so no case opened and the complaint left the manager's list. The case
    opens; its second round keeps off the phone, as for any customer who opted out of it."""
    from datetime import date

    from campaigns.catalog import load_campaigns
    from cases.second_round import plan_second_round
    from inbox.inbox import Inbox

    add_store(con)
    add_subscriber(con, "S1")
    sent = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    add_action(con, "A1", "S1", recipient="+8613800000001", sent_at=sent)
    inbox = Inbox(settings.inbox_path)
    form = {"MessageSid": "SM1", "From": "+8613800000001", "To": "+10000000000",
            "Body": "1 排队太久了 退订"}  # fmt: skip
    inbox.put("sms", "SM1", sent + timedelta(minutes=5), form)
    collect(con, inbox, reply_window=timedelta(hours=72))
    campaign = load_campaigns(settings)["birthday"]
    plan_second_round(con, settings, campaign, date(2026, 3, 1), "r2", created_at=sent)
    [(score, channel)] = con.execute(
        "SELECT m.score, a.channel FROM manager_cases m "
        "JOIN care_actions a ON a.parent_evaluation_id = m.evaluation_id"
    ).fetchall()
    assert (score, channel) == (1, "email")  # the phone opted out: the care goes by email


@pytest.mark.parametrize(
    "text", ["bu yao zai fa le", "bie fa laji duanxin le", "bie fa le, xie xie", "tui ding"]
)
def test_a_request_to_stop_in_pinyin_opts_out(text):
    """A phone without a Chinese keyboard writes 不要再发了 as "bu yao zai fa le": it was read
    as nothing, and the messages went on."""
    assert parse_reply(text).intent == "opt_out"
