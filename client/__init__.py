"""Clients of the voice_pipeline server: the Python client (`talk`) and the browser client (web/)."""
