"""audioclf: a reproducible pipeline that trains and serves audio classifiers."""

__version__ = "0.1.0"
