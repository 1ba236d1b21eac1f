"""The quota-aware IntakeQ API client.

Layers, bottom up (one module each): ``session`` (HTTP, key header, status and JSON
checks) → ``ledger`` (minute throttle and daily budget in a SQLite file shared by
processes) → ``retry`` (429, network errors, 5xx) → ``client`` (endpoints, paging).
"""
from __future__ import annotations

from .client import PAGE_SIZE, IntakeQClient
from .ledger import Ledger, Usage

__all__ = ["IntakeQClient", "Ledger", "Usage", "PAGE_SIZE"]
