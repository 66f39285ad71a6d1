"""The application: the server and its routes, the session host, composing engines from settings, the supervisor and the CLI."""
