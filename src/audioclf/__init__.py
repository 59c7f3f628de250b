"""audioclf: a reproducible pipeline that trains and serves audio classifiers.

Importing the package runs nothing heavy (no torch, transformers or Hydra), so each DVC stage
depends only on the modules it imports. The project's CNN registers itself with transformers'
Auto classes where a model is built (:mod:`audioclf.models.build`) or loaded
(:mod:`audioclf.classifier`); to load a saved one with transformers alone, ``import
audioclf.models.logmel_cnn`` first.
"""

__version__ = "0.1.0"
