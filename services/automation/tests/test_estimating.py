"""The estimate's ratios: the site's completed runs, or the defaults until a run has
measured enough (ADR 0035)."""

from __future__ import annotations

from services.automation.estimating import (
    IDEAS_PER_CLUSTER,
    IMAGES_PER_ARTICLE,
    KEYWORDS_PER_CLUSTER,
    Ratios,
)


def test_no_runs_means_the_defaults() -> None:
    assert Ratios.measured([]) == Ratios(KEYWORDS_PER_CLUSTER, IDEAS_PER_CLUSTER,
                                         IMAGES_PER_ARTICLE)


def test_runs_give_their_ratios_summed_over_runs() -> None:
    # The demo site's two runs as the journey saw them: 12 keywords made 9 clusters,
    # then 10 made 7; 3 ideas a cluster; 3 images an article.
    runs = [{"1": {"processed": 12, "created": 9}, "2": {"processed": 9, "created": 27},
             "5": {"processed": 27, "created": 81}},
            {"1": {"processed": 10, "created": 7}, "2": {"processed": 7, "created": 21},
             "5": {"processed": 33, "created": 99}}]
    assert Ratios.measured(runs) == Ratios(22 / 16, 3.0, 3.0)


def test_a_stage_with_too_few_items_keeps_its_default() -> None:
    runs = [{"1": {"processed": 3, "created": 3}, "2": {"processed": 0, "created": 0},
             "5": {"processed": 8, "created": 16}}, {"7": {"processed": 4}}, {}]
    assert Ratios.measured(runs) == Ratios(KEYWORDS_PER_CLUSTER, IDEAS_PER_CLUSTER, 2.0)
