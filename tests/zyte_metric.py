"""The Zyte article-extraction-benchmark metric, re-implemented from the
description in tests/data/extraction/README.md: per page, multisets of
token 4-gram shingles; TP/FP/FN normalised per page; precision and recall
averaged over pages; F1 from the two means."""

from __future__ import annotations

import re
from collections import Counter

_TOKEN = re.compile(r"\w+")


def shingles(text: str, n: int = 4) -> Counter:
    tokens = _TOKEN.findall(text or "")
    return Counter(tuple(tokens[i:i + n]) for i in range(max(len(tokens) - n + 1, 0)))


def score(predictions: dict[str, str], truth: dict[str, str]) -> tuple[float, float, float]:
    precision = recall = 0.0
    for key, expected in truth.items():
        pred, true = shingles(predictions.get(key, "")), shingles(expected)
        tp = sum((pred & true).values())
        fp = sum((pred - true).values())
        fn = sum((true - pred).values())
        total = tp + fp + fn
        if total == 0:
            precision += 1
            recall += 1
            continue
        tp, fp, fn = tp / total, fp / total, fn / total
        precision += tp / (tp + fp) if tp + fp else 0.0
        recall += tp / (tp + fn) if tp + fn else 0.0
    precision /= len(truth)
    recall /= len(truth)
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0
