"""Settings from options and INTAKEQ_* environment variables, in one dataclass.

Every ``INTAKEQ_*`` name the tool reads and every default is defined here, once: the
CLI's options and help texts and the sandbox's limits import them. A bad value is
refused here, whether it came from an option or a variable: one line, exit 1.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError

ENV_API_KEY = "INTAKEQ_API_KEY"
ENV_BASE_URL = "INTAKEQ_BASE_URL"
ENV_MAX_PER_MINUTE = "INTAKEQ_MAX_PER_MINUTE"
ENV_MAX_PER_DAY = "INTAKEQ_MAX_PER_DAY"
ENV_SNAPSHOT_DAYS = "INTAKEQ_SNAPSHOT_DAYS"
ENV_STATE_DIR = "INTAKEQ_ETL_STATE_DIR"
ENV_REUSE_DRY_RUN_MINUTES = "INTAKEQ_REUSE_DRY_RUN_MINUTES"   # read by the import (importer/reads.py)

DEFAULT_BASE_URL = "https://intakeq.com/api/v1/"
DEFAULT_MAX_PER_MINUTE = 10         # IntakeQ's limits (a plan without a paid upgrade)
DEFAULT_MAX_PER_DAY = 500
DEFAULT_SNAPSHOT_DAYS = 30
DEFAULT_REUSE_DRY_RUN_MINUTES = 60    # how long a dry run's reads serve the real run
LOOPBACK_HOSTS = {"localhost"}

# The whole-number settings: field -> (variable, smallest value, what a good value is).
_WHOLE_NUMBERS = {
    "max_per_minute": (ENV_MAX_PER_MINUTE, 1, "a positive whole number"),
    "max_per_day": (ENV_MAX_PER_DAY, 0, "0 (no daily budget) or a positive whole number"),
    "snapshot_days": (ENV_SNAPSHOT_DAYS, 0, "0 or a positive whole number of days"),
}


def default_state_dir() -> Path:
    from platformdirs import user_state_dir

    return Path(user_state_dir("intakeq-etl", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to talk to one IntakeQ account.

    ``max_per_day`` of 0 means no daily budget (paid plans).
    """

    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    max_per_minute: int = DEFAULT_MAX_PER_MINUTE
    max_per_day: int = DEFAULT_MAX_PER_DAY
    state_dir: Path = field(default_factory=default_state_dir)
    timeout: float = 60.0
    snapshot_days: int = DEFAULT_SNAPSHOT_DAYS   # snapshots younger than this are never pruned

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> "Settings":
        """Read INTAKEQ_* variables; explicit keyword overrides (not None) win.

        A whole-number setting may come as text (an option's value, as typed): it is
        checked by the same rule as the variable, so ``abc`` and ``0`` fail alike.
        """
        env = os.environ if env is None else env
        values = {
            "api_key": env.get(ENV_API_KEY) or None,
            "base_url": env.get(ENV_BASE_URL) or DEFAULT_BASE_URL,
            "max_per_minute": env.get(ENV_MAX_PER_MINUTE) or DEFAULT_MAX_PER_MINUTE,
            "max_per_day": env.get(ENV_MAX_PER_DAY) or DEFAULT_MAX_PER_DAY,
            "snapshot_days": env.get(ENV_SNAPSHOT_DAYS) or DEFAULT_SNAPSHOT_DAYS,
        }
        if env.get(ENV_STATE_DIR):
            values["state_dir"] = Path(env[ENV_STATE_DIR]).expanduser()
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in _WHOLE_NUMBERS:
            values[name] = whole_number(name, values[name])
        settings = cls(**values)
        settings.check()
        return settings

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    def check(self) -> None:
        """Refuse settings that would misbehave, before any request."""
        for name in _WHOLE_NUMBERS:
            whole_number(name, getattr(self, name))
        check_base_url(self.base_url)

    def require_key(self) -> str:
        if not self.api_key:
            raise ConfigError(f"no API key: set {ENV_API_KEY} (or use --sandbox)")
        return self.api_key

    @property
    def account_id(self) -> str:
        """A stable, non-reversible id of the account: a hash of the key, never the key."""
        key = self.api_key or ""
        return hashlib.sha256(("intakeq-etl:" + key).encode()).hexdigest()[:16]

    @property
    def account_dir(self) -> Path:
        return self.state_dir / "accounts" / self.account_id


def whole_number(name: str, raw) -> int:
    """The setting ``name`` (``max_per_minute``, ``max_per_day``, ``snapshot_days``) as an
    int, from an int or its text; ConfigError (exit 1) for anything else or too small."""
    variable, smallest, good = _WHOLE_NUMBERS[name]
    try:
        value = int(raw.strip()) if isinstance(raw, str) else raw
    except ValueError:
        value = None
    if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
        raise ConfigError(f"{variable} must be {good}, not {str(raw)!r}")
    return value


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str) -> None:
    """Only https, or plain http to this machine: the key and health data travel over TLS."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{ENV_BASE_URL} is not an http(s) URL: {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"{ENV_BASE_URL} uses plain http to a remote host; use an https:// URL "
            "(the API key and health data only travel over TLS)"
        )
