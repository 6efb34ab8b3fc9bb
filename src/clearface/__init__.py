"""clearface: binary face-image classifiers tuned for the Half Total Error Rate."""

__version__ = "0.1.0"
