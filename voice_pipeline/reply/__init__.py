"""One reply's lifetime: a pure lifecycle (lifecycle.py) and the handle that owns the reply (handle.py)."""
