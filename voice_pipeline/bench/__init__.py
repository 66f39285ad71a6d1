"""`voice-pipeline bench`: latency of every stage, voice-to-voice, concurrency, cold start, baselines."""
