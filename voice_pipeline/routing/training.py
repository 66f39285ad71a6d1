"""Deterministic training and held-out evaluation of the router (numpy only, no randomness)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from voice_pipeline.routing.features import N_FEATURES, featurize_batch
from voice_pipeline.routing.model import DATA_VERSION, EVAL_PATH, ROUTER_DIR, ROUTES, Router

EPOCHS = 300
LEARNING_RATE = 2.0
MOMENTUM = 0.9
L2 = 1e-4


def data_path(split: str, version: str = DATA_VERSION) -> Path:
    return ROUTER_DIR / "data" / version / f"{split}.jsonl"


def load_split(split: str, version: str = DATA_VERSION) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    index = {route.value: i for i, route in enumerate(ROUTES)}
    with data_path(split, version).open() as handle:
        for line in handle:
            row = json.loads(line)
            texts.append(row["text"])
            labels.append(index[row["route"]])
    return texts, np.array(labels, np.int64)


def train(texts: list[str], labels: np.ndarray, epochs: int = EPOCHS) -> Router:
    """Full-batch gradient descent with momentum on softmax cross-entropy plus L2: no randomness."""
    rows, columns, values = featurize_batch(texts)
    n_rows, n_classes = len(texts), len(ROUTES)
    targets = np.eye(n_classes, dtype=np.float32)[labels]
    weights = np.zeros((N_FEATURES, n_classes), np.float32)
    bias = np.zeros(n_classes, np.float32)
    velocity_w, velocity_b = np.zeros_like(weights), np.zeros_like(bias)
    for _ in range(epochs):
        logits = np.zeros((n_rows, n_classes), np.float32)
        np.add.at(logits, rows, values[:, None] * weights[columns])
        logits += bias
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        error = (probs - targets) / n_rows
        grad_w = np.zeros_like(weights)
        np.add.at(grad_w, columns, values[:, None] * error[rows])
        grad_w += L2 * weights
        velocity_w = MOMENTUM * velocity_w - LEARNING_RATE * grad_w
        velocity_b = MOMENTUM * velocity_b - LEARNING_RATE * error.sum(axis=0)
        weights += velocity_w
        bias += velocity_b
    return Router(weights, bias)


def evaluate(router: Router, texts: list[str], labels: np.ndarray) -> dict:
    predicted = np.array([ROUTES.index(router.route(t).route) for t in texts], np.int64)
    n_classes = len(ROUTES)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for i, route in enumerate(ROUTES):
        predicted_i, actual_i = confusion[:, i].sum(), confusion[i].sum()
        per_class[route.value] = {
            "precision": round(float(confusion[i, i] / predicted_i), 4) if predicted_i else 0.0,
            "recall": round(float(confusion[i, i] / actual_i), 4) if actual_i else 0.0,
            "support": int(actual_i),
        }
    return {
        "data_version": router.data_version,
        "split": "heldout",
        "n": int(len(labels)),
        "accuracy": round(float((predicted == labels).mean()), 4),
        "per_class": per_class,
        "labels": [route.value for route in ROUTES],
        "confusion_matrix": confusion.tolist(),  # rows: true route, columns: predicted route
    }


def train_and_save() -> dict:
    """Retrain on train.jsonl, rewrite the weights and EVAL.json; return the evaluation."""
    router = train(*load_split("train"))
    router.save()
    report = evaluate(router, *load_split("heldout"))
    report["train_rows"] = len(load_split("train")[0])
    EVAL_PATH.write_text(json.dumps(report, indent=2) + "\n")
    return report
