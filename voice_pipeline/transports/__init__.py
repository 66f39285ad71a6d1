"""Transports are codecs: they decode wire bytes into session input and encode session output."""
