"""Data sources, audio decoding, splitting, manifests and dataset storage."""
