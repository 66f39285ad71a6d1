"""Who may use the server: tokens, origins, provider signatures and the start-up exposure checks (docs/security.md)."""
