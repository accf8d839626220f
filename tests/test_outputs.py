"""Plot styles of the scripts' outputs (`nasjax.experiment.outputs.series_styles`)."""

from nasjax.experiment.outputs import series_styles
from nasjax.experiment.tabular_search import VARIANTS, strategy_of
from nasjax.search import STRATEGIES


def test_every_row_of_a_full_table_has_its_own_style():
    """sample_efficiency's default rows (every strategy and variant: more than matplotlib's 10-color
    cycle) get distinct (color, line style) pairs; a variant has its strategy's color, not solid."""
    rows = sorted(STRATEGIES) + sorted(VARIANTS)
    assert len(rows) > 10
    styles = series_styles(rows, family=strategy_of)
    assert len({(s["color"], s["ls"]) for s in styles.values()}) == len(rows)
    assert len({styles[name]["color"] for name in STRATEGIES}) == len(STRATEGIES)
    for row, (strategy, _) in VARIANTS.items():
        assert styles[row]["color"] == styles[strategy]["color"] and styles[row]["ls"] != "-"
        assert styles[strategy]["ls"] == "-"


def test_a_variant_listed_before_its_strategy_does_not_take_the_solid_line():
    styles = series_styles(["nao_paper", "nao", "bo"], family=strategy_of)
    assert styles["nao"]["ls"] == "-" and styles["nao_paper"]["ls"] == "--"
    assert styles["nao"]["color"] == styles["nao_paper"]["color"] != styles["bo"]["color"]
