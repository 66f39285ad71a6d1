"""The turn router: a multinomial logistic regression over hashed n-grams (see `features`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice_pipeline.routing.features import N_FEATURES, featurize

DATA_VERSION = "v1"
ROUTER_DIR = Path(__file__).resolve().parents[2] / "models" / "router"
WEIGHTS_PATH = ROUTER_DIR / f"weights-{DATA_VERSION}.npz"
EVAL_PATH = ROUTER_DIR / "EVAL.json"


class Route(str, enum.Enum):
    INSTANT = "instant"  # template answer, no model
    SMALL = "small"  # the local small model
    LARGE = "large"  # the remote large model (OpenAI-compatible endpoint)


ROUTES: tuple[Route, ...] = (Route.INSTANT, Route.SMALL, Route.LARGE)  # column order of the weights


@dataclass(frozen=True)
class RouteDecision:
    route: Route
    confidence: float  # softmax probability of `route`, 0..1


class Router:
    """Holds the weights; `route()` is pure numpy over one sparse row (well under a millisecond)."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, data_version: str = DATA_VERSION) -> None:
        if weights.shape != (N_FEATURES, len(ROUTES)) or bias.shape != (len(ROUTES),):
            raise ValueError(f"router weights must be {(N_FEATURES, len(ROUTES))}, got {weights.shape}")
        self.weights = weights.astype(np.float32)
        self.bias = bias.astype(np.float32)
        self.data_version = data_version

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Router":
        with np.load(path or WEIGHTS_PATH) as data:
            return cls(data["weights"], data["bias"], str(data["data_version"]))

    def save(self, path: str | Path | None = None) -> None:
        np.savez_compressed(path or WEIGHTS_PATH, weights=self.weights, bias=self.bias,
                            data_version=np.array(self.data_version))

    def probabilities(self, text: str) -> np.ndarray:
        columns, values = featurize(text)
        logits = values @ self.weights[columns] + self.bias
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()

    def route(self, text: str) -> RouteDecision:
        probs = self.probabilities(text)
        best = int(np.argmax(probs))
        return RouteDecision(ROUTES[best], float(probs[best]))
