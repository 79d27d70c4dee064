"""pytest-metatrace: audit visual encoders for processing and acquisition traces."""

__version__ = "0.1.0"
