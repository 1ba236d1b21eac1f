"""Fault injection for the sandbox, seeded so that a run can be repeated.

``Faults(seed, fail_before, lost_response, write_latency)``:

* ``fail_before`` — the fraction of API requests that answer 503 *before* any effect;
* ``lost_response`` — the fraction of writes (POST/DELETE) that take effect, are persisted,
  and then answer 502 (the client cannot know the write happened);
* ``write_latency`` — seconds of (real) sleep between a write taking effect (and being
  persisted) and its reply, so that a client killed meanwhile dies after the effect.

Every API request draws one number for ``fail_before`` and every write that got through
draws one for ``lost_response``, from one ``random.Random(seed)``: the same sequence of
requests meets the same faults. (Concurrent requests draw in arrival order.)
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass


@dataclass
class Faults:
    seed: int = 0
    fail_before: float = 0.0
    lost_response: float = 0.0
    write_latency: float = 0.0

    def __post_init__(self):
        for name in ("fail_before", "lost_response"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, not {value!r}")
        if self.write_latency < 0:
            raise ValueError("write_latency must not be negative")

    @property
    def active(self) -> bool:
        return bool(self.fail_before or self.lost_response or self.write_latency)


class FaultInjector:
    """The seeded decisions of one ``Faults`` configuration."""

    def __init__(self, faults: Faults | None = None):
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self.injected: list[tuple[str, int]] = []  # (kind, request number), for tests

    def _draw(self) -> float:
        with self._lock:
            return self._rng.random()

    def fail_before(self, n: int) -> bool:
        hit = self._draw() < self.faults.fail_before
        if hit:
            self.injected.append(("fail_before", n))
        return hit

    def lose_response(self, n: int) -> bool:
        hit = self._draw() < self.faults.lost_response
        if hit:
            self.injected.append(("lost_response", n))
        return hit

    @property
    def write_latency(self) -> float:
        return self.faults.write_latency
