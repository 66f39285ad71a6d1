"""Per-turn routing: a tiny trained classifier (instant | small | large), template answers for
instant intents, and a circuit breaker for remote engines."""

from .model import Route, RouteDecision, Router

__all__ = ["Route", "RouteDecision", "Router"]
