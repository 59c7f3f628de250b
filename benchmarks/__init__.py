"""The benchmark suite behind ``python -m benchmarks``: one module per figure of bench.json.

- :mod:`.throughput`  training samples/s of the train stage's loop vs a bare PyTorch loop
- :mod:`.accuracy`    time to 90% test accuracy: our recipe vs the HF ``Trainer`` task guide
- :mod:`.repro`       ``dvc repro`` with nothing changed, and after one train param changed
- :mod:`.scaling`     featurize throughput and peak memory at 1x, 4x, 16x the data
- :mod:`.inference`   ``audioclf.classifier.Classifier`` vs ``transformers.pipeline``
- :mod:`.stages`      each stage run as a subprocess: wall time and peak memory

:mod:`.suite` runs them in a throwaway copy of the repository (:mod:`.workspace`) and writes
the JSON and the markdown table (:mod:`.report`). Nothing in the user's workspace is touched.
"""
