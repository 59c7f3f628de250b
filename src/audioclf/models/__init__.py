"""Models and their feature extractors, built from the ``model`` config group.

Nothing outside this package and ``conf/model/`` knows which architecture is used: a checkpoint
(``name_or_path``, Hub id or local directory) or a from-scratch ``config`` with ``model_type``.
The package's modules are imported one by one (:mod:`.extractor` for featurize, :mod:`.build`
for train), so a stage depends only on the model code it runs; this file imports nothing.
"""
