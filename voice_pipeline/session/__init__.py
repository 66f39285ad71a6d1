"""One conversation: the input loop, turn taking, transcription scheduling, end of turn, history and the outbox."""
