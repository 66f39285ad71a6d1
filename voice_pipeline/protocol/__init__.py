"""The wire protocol of /v1/realtime: client commands, server events, per-session config and the JSON codec."""
