"""Search configs (conf/hparams_search/): checked against conf/ before any trial runs, with
errors naming the file and key; samplers, overrides and storage as the worker uses them."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from audioclf.config import ConfigError
from audioclf.hparams_search.spec import load_spec
from audioclf.hparams_search.worker import override, shown_storage, storage_url
from audioclf.testing import REPO_ROOT, make_project


def write_search(root: Path, name: str, **search: object) -> Path:
    path = root / "conf" / "hparams_search" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(search))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project").root


LR = {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}


def test_the_shipped_search_loads_and_describes_its_space() -> None:
    spec = load_spec("lr_dropout", REPO_ROOT)
    assert spec.study_name == "lr_dropout" and spec.direction == "maximize"
    assert spec.objective == "best_accuracy" and spec.curve_metric == "accuracy"
    described = spec.describe()
    assert described["space.train.learning_rate"] == "float[0.001, 0.03] log"
    assert described["search.sampler"] == "name=tpe, seed=42, n_startup_trials=4"
    assert isinstance(spec.make_sampler(), optuna.samplers.TPESampler)
    assert isinstance(spec.make_pruner(), optuna.pruners.MedianPruner)


def test_a_misspelled_space_key_fails_naming_the_key_and_the_file(root: Path) -> None:
    path = write_search(
        root,
        "typo",
        objective="best_accuracy",
        n_trials=2,
        space={"train.learnin_rate": LR["train.learning_rate"]},
    )
    with pytest.raises(ConfigError, match=r"typo\.yaml: space\.train\.learnin_rate: no such key"):
        load_spec("typo", root)
    assert path.is_file()


def test_a_search_never_selects_on_test(root: Path) -> None:
    write_search(root, "peek", objective="test_accuracy", n_trials=2, space=LR)
    with pytest.raises(ConfigError, match="never selects on test"):
        load_spec("peek", root)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_trials", 0, "n_trials must be a whole number of at least 1"),
        ("direction", "up", "direction must be one of"),
        ("sampler", {"name": "cmaes"}, "sampler.name must be one of"),
        ("pruner", {"name": "never"}, "pruner.name must be one of"),
        (
            "space",
            {"train.learning_rate": {"type": "float", "low": 0.0, "high": 1.0, "log": True}},
            "a log scale needs low > 0",
        ),
        (
            "space",
            {"train.learning_rate": {"type": "float", "low": 1.0, "high": 0.1}},
            "needs low < high",
        ),
        ("space", {"train.epochs": {"type": "range"}}, "type must be one of"),
    ],
)
def test_bad_search_fields_fail_naming_the_field(
    root: Path, field: str, value: object, message: str
) -> None:
    search = {"objective": "best_loss", "n_trials": 2, "space": LR, field: value}
    write_search(root, "bad", **search)
    with pytest.raises(ConfigError, match=message) as raised:
        load_spec("bad", root)
    assert "bad.yaml" in str(raised.value)


def test_a_grid_takes_choices_only_and_its_points_are_the_grid(root: Path) -> None:
    write_search(root, "loose", objective="best_loss", n_trials=2, sampler="grid", space=LR)
    with pytest.raises(ConfigError, match="a grid takes categorical choices only"):
        load_spec("loose", root)
    choices = {"train.learning_rate": {"type": "categorical", "choices": [0.001, 0.003]}}
    write_search(root, "grid", objective="best_loss", sampler="grid", space=choices)
    spec = load_spec("grid", root)
    assert spec.grid() == {"train.learning_rate": [0.001, 0.003]}
    assert spec.n_trials == 2  # a grid's trials are its points, at most
    assert load_spec("grid", root, n_trials=5).n_trials == 2
    assert load_spec("grid", root, n_trials=1).n_trials == 1
    study = optuna.create_study(sampler=spec.make_sampler())
    study.optimize(lambda t: spec.space[0].suggest(t), n_trials=2)
    assert sorted(t.params["train.learning_rate"] for t in study.trials) == [0.001, 0.003]


def test_an_unknown_search_lists_the_known_ones(root: Path) -> None:
    write_search(root, "known", objective="best_loss", n_trials=1, space=LR)
    with pytest.raises(ConfigError, match=r"unknown\.yaml not found .*known"):
        load_spec("unknown", root)


def test_fixed_overrides_must_compose(root: Path) -> None:
    write_search(root, "fixed", objective="best_loss", n_trials=1, space=LR)
    with pytest.raises(ConfigError, match="do not compose"):
        load_spec("fixed", root, overrides=["data=nowhere"])
    assert load_spec("fixed", root, overrides=["debug=fast"]).overrides == ("debug=fast",)


def test_workers_started_together_draw_different_points(root: Path) -> None:
    write_search(
        root,
        "seeded",
        objective="best_loss",
        n_trials=1,
        sampler={"name": "random", "seed": 7},
        space=LR,
    )
    spec = load_spec("seeded", root)

    def first_point(worker_index: int) -> float:
        study = optuna.create_study(sampler=spec.make_sampler(worker_index))
        return spec.space[0].suggest(study.ask())

    assert first_point(0) == first_point(0)
    assert first_point(0) != first_point(1)


def test_overrides_are_written_as_hydra_reads_them() -> None:
    assert override("train.learning_rate", 0.001) == "train.learning_rate=0.001"
    assert override("model.config.channels", [8, 16]) == "model.config.channels=[8, 16]"
    assert override("train.resume", False) == "train.resume=false"


def test_the_storage_url_comes_from_the_flag_then_the_environment_then_the_repo(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_search(root, "s", objective="best_loss", n_trials=1, space=LR)
    spec = load_spec("s", root)
    monkeypatch.delenv("AUDIOCLF_OPTUNA_STORAGE", raising=False)
    assert storage_url(spec, root) == f"sqlite:///{root.resolve() / 'optuna.db'}"
    monkeypatch.setenv("AUDIOCLF_OPTUNA_STORAGE", "postgresql://team@db/optuna")
    assert storage_url(spec, root) == "postgresql://team@db/optuna"
    assert storage_url(spec, root, "sqlite:///x.db") == "sqlite:///x.db"
    shown = shown_storage("postgresql+psycopg2://mlflow:s3cret@127.0.0.1:5432/optuna")
    assert "s3cret" not in shown and shown.endswith("@127.0.0.1:5432/optuna")


def test_a_storage_that_does_not_open_is_an_error_naming_it_without_its_password(
    root: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audioclf.cli import main

    monkeypatch.chdir(root)
    write_search(root, "s", objective="best_loss", n_trials=1, space=LR)
    storage = "nosuchdb://user:s3cret@127.0.0.1/optuna"
    code = main(["sweep", "s", "--storage", storage])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot open the study's storage nosuchdb://user:***@127.0.0.1/optuna" in err
    assert "s3cret" not in err
    assert not (root / "mlflow.db").exists()  # nothing was opened before the storage failed
