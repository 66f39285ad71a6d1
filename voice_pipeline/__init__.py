"""voice_pipeline: a real-time streaming voice assistant pipeline."""

__version__ = "0.1.0"
