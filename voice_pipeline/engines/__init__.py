"""Model engines (STT, LLM, TTS) behind the protocols in `base`."""
