"""homellm: run language models on the hardware you own, and know what it can do."""

__version__ = "0.1.0"
