"""Settings from options and INTAKEQ_* environment variables, in one dataclass."""
from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_BASE_URL = "https://intakeq.com/api/v1/"
DEFAULT_MAX_PER_MINUTE = 10
DEFAULT_MAX_PER_DAY = 500
DEFAULT_SNAPSHOT_DAYS = 30
LOOPBACK_HOSTS = {"localhost"}


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
        """Read INTAKEQ_* variables; explicit keyword overrides (not None) win."""
        env = os.environ if env is None else env
        values = {
            "api_key": env.get("INTAKEQ_API_KEY") or None,
            "base_url": env.get("INTAKEQ_BASE_URL") or DEFAULT_BASE_URL,
            "max_per_minute": _int_var(env, "INTAKEQ_MAX_PER_MINUTE", DEFAULT_MAX_PER_MINUTE),
            "max_per_day": _int_var(env, "INTAKEQ_MAX_PER_DAY", DEFAULT_MAX_PER_DAY),
            "snapshot_days": _int_var(env, "INTAKEQ_SNAPSHOT_DAYS", DEFAULT_SNAPSHOT_DAYS),
        }
        if env.get("INTAKEQ_ETL_STATE_DIR"):
            values["state_dir"] = Path(env["INTAKEQ_ETL_STATE_DIR"]).expanduser()
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    def check(self) -> None:
        """Refuse settings that would misbehave, before any request."""
        if self.max_per_minute < 1:
            raise ConfigError("INTAKEQ_MAX_PER_MINUTE must be a positive whole number")
        if self.max_per_day < 0:
            raise ConfigError("INTAKEQ_MAX_PER_DAY must be 0 (no daily budget) or a positive whole number")
        if self.snapshot_days < 0:
            raise ConfigError("INTAKEQ_SNAPSHOT_DAYS must be 0 or a positive whole number of days")
        check_base_url(self.base_url)

    def require_key(self) -> str:
        if not self.api_key:
            raise ConfigError("no API key: set INTAKEQ_API_KEY (or use --sandbox)")
        return self.api_key

    @property
    def account_id(self) -> str:
        """A stable, non-reversible id of the account: a hash of the key, never the key."""
        key = self.api_key or ""
        return hashlib.sha256(("intakeq-etl:" + key).encode()).hexdigest()[:16]

    @property
    def account_dir(self) -> Path:
        return self.state_dir / "accounts" / self.account_id


def _int_var(env, name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None


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
        raise ConfigError(f"INTAKEQ_BASE_URL is not an http(s) URL: {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            "INTAKEQ_BASE_URL uses plain http to a remote host; use an https:// URL "
            "(the API key and health data only travel over TLS)"
        )
