"""Per-turn routing: a tiny trained classifier (instant | small | large), template answers for
instant intents, and a circuit breaker for remote engines."""

from voice_pipeline.routing.model import Route, RouteDecision, Router

__all__ = ["Route", "RouteDecision", "Router"]
