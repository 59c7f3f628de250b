"""MLflow: where runs go (:mod:`.store`), what they carry (:mod:`.params`, :mod:`.tags`,
:mod:`.artifacts`), how the train stage opens its run (:mod:`.train_run`) and how a run's status
follows the pipeline (:mod:`.outcome`).

Nothing is imported here: a stage imports the modules it uses, so its DVC deps are those.
"""
