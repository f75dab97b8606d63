"""insights send-time on a period the campaign sent nothing in."""

from typer.testing import CliRunner

from careloop.cli import app
from tests.test_send_time import simulate


def test_a_period_after_the_last_send_is_a_usage_error_not_advice(con, settings):
    """The sends end on 2026-05-31. A period in 2027 holds none: a usage error naming the
    period, not a table of zeros with advice about the exploration share."""
    simulate(con, 1, planted=True, customers=200)
    result = CliRunner().invoke(
        app,
        ["insights", "send-time", "--campaign", "birthday",
         "--cutoff", "2027-01-01", "--until", "2027-02-01"],
    )  # fmt: skip
    assert "exploration share" not in result.output, result.output
    assert result.exit_code == 2, result.output
