"""P(best) in the JSON output, beside the text surfaces' bounds."""

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
