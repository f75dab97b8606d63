"""P(best) in the JSON output, beside the text surfaces' bounds."""

import numpy as np

from campaigns.variants import Tally, probability_best
from insights.variants import VariantFigures, p_best_text


def test_the_json_p_best_is_no_more_certain_than_the_text():
    """The text surfaces say ">0.9999" for 0.99996 (not certainty); the JSON gives the
    figure in full, never rounded to 1.0 or 0.0."""
    near_one = VariantFigures("warm", 900, 800, 700, 0.99996)
    near_zero = VariantFigures("standard", 900, 800, 500, 0.00004)
    assert p_best_text(near_one.p_best) == ">0.9999"
    assert near_zero.as_json()["p_best"] > 0 and near_one.as_json()["p_best"] < 1, (
        near_zero.as_json()["p_best"],
        near_one.as_json()["p_best"],
    )


def test_a_variant_that_won_every_draw_is_not_certainly_best():
    """20,000 draws cannot tell 1.0 from 0.99999: `careloop report --format json` said
    p_best 1.0 and 0.0 for a lead every draw kept, where the text said >0.9999 and <0.0001."""
    names = ("personal", "standard")
    tally = Tally(names, np.array([5000, 5000]), np.array([4000, 4000]), np.array([3000, 1000]))
    p = probability_best(tally, np.random.default_rng(1))
    assert 0.9999 < p[0] < 1 and 0 < p[1] < 0.0001 and abs(p.sum() - 1) < 1e-12
