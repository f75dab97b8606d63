"""A learned campaign's fixed time outside its own send window."""

import pytest

from campaigns.spec import DEFINITIONS_DIR, CampaignError, parse_campaign


def test_a_fallback_outside_the_send_window_is_refused_naming_it(tmp_path):
    """send_time: learned, send_time_fallback "08:00", send_window 09:00-21:00: refused,
    naming send_time_fallback. Outside the window the fixed hour's head start
    (send_time.MIN_GAIN) would never apply, and its SMS would wait for 09:00 while its
    emails went at 08:00: the fixed time would not be one time."""
    raw = (DEFINITIONS_DIR / "birthday.yaml").read_text()
    assert 'send_time_fallback: "10:00"' in raw and 'send_window: ["09:00", "21:00"]' in raw
    path = tmp_path / "birthday.yaml"
    path.write_text(raw.replace('send_time_fallback: "10:00"', 'send_time_fallback: "08:00"'))
    with pytest.raises(CampaignError, match="send_time_fallback"):
        parse_campaign(path)
