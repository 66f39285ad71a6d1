"""Which addresses count as loopback, and which browser origins may use the server."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`. Other names are not resolved, so they do not count."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def binds_beyond_loopback(host: str) -> bool:
    """Whether listening on `host` can be reached from other machines ("" and 0.0.0.0: every interface)."""
    return not host or not is_loopback_host(host)


def normalize_origin(origin: str) -> str | None:
    """`scheme://host[:port]`, lower case, without a default port; None for anything else ("null", a path)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[parts.scheme] else "")


def parse_allowed_origins(text: str) -> tuple[frozenset[str], list[str]]:
    """`server.allowed_origins` (comma- or space-separated): the normalized origins, and the entries that are not."""
    entries = [entry for entry in re.split(r"[\s,]+", text or "") if entry]
    normalized = {entry: normalize_origin(entry) for entry in entries}
    return frozenset(o for o in normalized.values() if o), [entry for entry, o in normalized.items() if o is None]


def origin_allowed(origin: str | None, host_header: str | None, allowed: frozenset[str],
                   loopback_host_only: bool) -> bool:
    """May a request with this `Origin` header, sent to this `Host`, go on?

    No Origin: not a browser, allowed (the token rule still applies). Otherwise the origin must be
    listed in `allowed`, or be the page's own origin: the same host and port as the request's Host.
    With `loopback_host_only` (no token is set) that Host must also be a loopback name, or a page
    on a DNS-rebinding domain (evil.example resolving to 127.0.0.1) would count as same-origin.
    """
    if origin is None:
        return True
    normalized = normalize_origin(origin)
    if normalized is None:
        return False
    if normalized in allowed:
        return True
    scheme = normalized.partition("://")[0]
    if not host_header or normalize_origin(f"{scheme}://{host_header}") != normalized:
        return False
    return not loopback_host_only or is_loopback_host(urlsplit(normalized).hostname or "")
