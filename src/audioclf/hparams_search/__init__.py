"""Hyperparameter searches: an Optuna study whose trials are DVC experiments and MLflow runs.

``audioclf sweep NAME`` reads ``conf/hparams_search/NAME.yaml`` (:mod:`.spec`), joins the study
in Optuna's storage, and runs trials until the study holds its ``n_trials`` (:mod:`.worker`).
Each trial is ``dvc exp run --temp`` with the sampled values as ``-S`` overrides, so it ends as
a git ref that ``dvc exp show`` lists, and its MLflow run is a child of the sweep's parent run
(:mod:`.runs`). Workers on other machines join the same study through a shared storage
(PostgreSQL) and push their experiments with ``dvc exp push``.
"""
