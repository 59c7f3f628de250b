"""``python -m benchmarks.gpu``: the flagship model's training on GPUs, into reports/gpu.json.

Two parts, each recorded even when the other cannot run:

- **Training throughput and memory** (:mod:`.training`, :mod:`.launch`). A wav2vec2-base-sized
  classifier (transformers' ``Wav2Vec2Config`` defaults are the base size; random init, so
  nothing is downloaded) trained with AdamW as ``train=wav2vec2_base`` does (its batch, crop,
  learning rate, gradient clipping, frozen feature encoder, read from ``conf/`` by
  :mod:`.settings`): samples/s and peak GPU memory (``torch.cuda.max_memory_allocated``) at
  fp32 and bf16 (Accelerate's ``mixed_precision``) on one GPU, then the same through
  ``accelerate launch --multi_gpu`` on all GPUs where there are several. This part needs torch,
  transformers, accelerate, numpy, PyYAML and psutil, nothing else of the project: a GPU
  machine's stock PyTorch image runs it.
- **The flagship recipe's code path, one epoch** (:mod:`.flagship`): ``dvc repro`` of
  ``model=wav2vec2_base train=wav2vec2_base train.epochs=1`` in a throwaway copy, from a local
  random checkpoint. Needs the whole project installed (DVC, MLflow, datasets, Hydra ...).

:mod:`.suite` runs the parts into the report, whose ``machine`` (:mod:`.machine`) is what a
training run records of its machine (:mod:`audioclf.environment`) plus each GPU; :mod:`.report`
prints its lines; :mod:`.wheels` lists what a GPU machine lacks (``scripts/gpu_check.sh
--fetch-wheels``). ``--smoke`` runs both parts on the CPU with a tiny config and generated data
(seconds, and about a minute for the pipeline): the tests' check of this code path on a machine
without a GPU. ``scripts/gpu_check.sh`` checks the prerequisites first and runs this package.
"""
