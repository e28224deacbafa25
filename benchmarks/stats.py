"""Summary statistics with numpy: percentiles of samples, and cost-against-N fits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Summary:
    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @staticmethod
    def of(samples: Sequence[float]) -> Summary | None:
        if not samples:
            return None
        values = np.asarray(samples, dtype=float)
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return Summary(len(values), float(p50), float(p95), float(p99), float(values.max()))


@dataclass(frozen=True, slots=True)
class LinearFit:
    """cost(N) = fixed + per_stream * N, by least squares over the measured N."""

    fixed: float
    per_stream: float
    r2: float

    @staticmethod
    def of(ns: Sequence[float], costs: Sequence[float]) -> LinearFit | None:
        if len(ns) < 2 or len(set(ns)) < 2:
            return None
        x = np.asarray(ns, dtype=float)
        y = np.asarray(costs, dtype=float)
        per_stream, fixed = np.polyfit(x, y, 1)
        residual = y - (fixed + per_stream * x)
        total = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else 1.0
        return LinearFit(float(fixed), float(per_stream), r2)
