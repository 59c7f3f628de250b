"""audioclf: a reproducible pipeline that trains and serves audio classifiers.

Importing it registers the project's own model (``model_type="audioclf_logmel_cnn"``) with
transformers' Auto classes, so ``AutoModelForAudioClassification.from_pretrained`` and
``pipeline("audio-classification")`` load a saved one without ``trust_remote_code``.
"""

from audioclf.models.logmel_cnn import register_auto_classes

__version__ = "0.1.0"

register_auto_classes()
