"""benchmarks.lr_sweep's arguments and figure, without running a pipeline."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.lr_sweep import (
    DEFAULT_LEARNING_RATES,
    build_parser,
    parse_learning_rates,
    summarize,
    sweep_from_args,
)


def test_defaults_sweep_three_rates_of_the_default_recipe():
    sweep = sweep_from_args(build_parser().parse_args([]))
    assert sweep.learning_rates == DEFAULT_LEARNING_RATES == (1e-3, 3e-3, 1e-2)
    assert sweep.point_overrides(3e-3) == ["train.learning_rate=0.003"]


def test_overrides_and_other_data_reach_every_point():
    args = build_parser().parse_args(
        ["--learning-rates", "1e-4,1e-3", "--override", "model.config.n_mels=40", "--data", "d"]
    )
    sweep = sweep_from_args(args)
    assert sweep.learning_rates == (1e-4, 1e-3)
    assert sweep.point_overrides(1e-4) == [
        "data.path=d",
        "data.tracked_path=d",
        "model.config.n_mels=40",
        "train.learning_rate=0.0001",
    ]


@pytest.mark.parametrize("text", ["1e-3", "1e-3,abc", "1e-3,-1", "1e-3,1e-3", "1e-3,nan"])
def test_bad_learning_rates_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_learning_rates(text)


@pytest.mark.parametrize("text", ["n_mels", "train.learning_rate=1", "=3"])
def test_bad_overrides_are_refused(text, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--override", text])


def test_figure_spread_and_default_band():
    sweep = sweep_from_args(build_parser().parse_args([]))
    points = [
        {"learning_rate": lr, "val_best_accuracy": val, "test_accuracy": test}
        for lr, val, test in [(1e-3, 0.90, 0.91), (3e-3, 0.95, 0.94), (1e-2, 0.93, 0.92)]
    ]
    figure = summarize(sweep, points, default_learning_rate=3e-3)
    assert figure["val_best_accuracy_spread"] == pytest.approx(0.05)
    assert figure["spread_met"] is True
    assert figure["default_test_accuracy"] == 0.94
    assert figure["test_accuracy_met"] is True
