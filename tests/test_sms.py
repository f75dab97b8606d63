import pytest

from campaigns.catalog import load_campaign
from campaigns.sms import is_gsm7, segment_count
from campaigns.spec import DEFINITIONS_DIR, CampaignError
from segments.registry import load_rules


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),  # GSM-7 extension: two septets each
        ("好" * 70, 1),
        ("好" * 71, 2),
        ("好" * 134, 2),
        ("好" * 135, 3),
        ("a" * 69 + "好", 1),
        ("a" * 70 + "好", 2),  # one Chinese character makes it UCS-2
        ("😀" * 35, 1),
        ("😀" * 36, 2),  # an emoji is two UTF-16 units
    ],
)
def test_segment_count(text, segments):
    assert segment_count(text) == segments


def test_gsm7_detection():
    assert is_gsm7("Reply STOP to opt out. Café @ 5€")
    assert not is_gsm7("回复TD退订")


def test_a_template_over_the_segment_limit_is_refused_at_load(settings, tmp_path):
    text = (DEFINITIONS_DIR / "birthday.yaml").read_text()
    path = tmp_path / "short.yaml"
    path.write_text(text.replace("holdout_percent: 10", "holdout_percent: 10\nsms_max_segments: 1"))
    with pytest.raises(
        CampaignError,
        match=r"care\.messages\..*\.sms with offer .* for .* of .*: 3 SMS "
        r"segments with the survey and opt-out line; "
        r"the limit is 1",
    ):
        load_campaign(path, load_rules(), settings)
