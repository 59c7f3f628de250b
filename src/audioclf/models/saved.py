"""What a saved model folder records beyond transformers' own files.

The train stage writes these into the ``save_pretrained`` folder it exports; inference reads
them back (:mod:`audioclf.windows`). They are attributes of the feature extractor, kept in its
``preprocessor_config.json`` by ``save_pretrained``/``from_pretrained`` and ignored by
``transformers.pipeline``. Kept apart, importing nothing, so that the writer and the readers
share the names without importing each other.
"""

# The training clip length in seconds: the default scoring window.
WINDOW_ATTRIBUTE = "audioclf_window_s"
