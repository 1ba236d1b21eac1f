"""What every command shares: settings, the embedded sandbox, the API client."""
from __future__ import annotations

from pathlib import Path

from ..config import ENV_STATE_DIR, Settings, default_state_dir


class AppContext:
    """Built by the top-level group; commands ask it for settings and a client.

    With ``--sandbox`` the first call to :meth:`settings` starts the embedded sandbox
    on a free 127.0.0.1 port (state kept in the state dir) and points the settings at it.
    """

    def __init__(self, overrides: dict, use_sandbox: bool = False, debug: bool = False):
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self.use_sandbox = use_sandbox
        self.debug = debug
        self._settings: Settings | None = None
        self._sandbox = None
        self._client = None

    @property
    def state_dir(self) -> Path:
        if self._settings is not None:
            return self._settings.state_dir
        import os

        raw = self.overrides.get("state_dir") or os.environ.get(ENV_STATE_DIR)
        return Path(raw).expanduser() if raw else default_state_dir()

    def settings(self) -> Settings:
        """Settings from options and environment (no API key needed)."""
        if self._settings is None:
            settings = Settings.from_env(**self.overrides)
            if self.use_sandbox:
                from ..sandbox import start_embedded

                # The emulated account has the plan the settings describe (IntakeQ's limits
                # by default), so raising INTAKEQ_MAX_PER_* speeds up --sandbox runs too.
                self._sandbox = start_embedded(settings.state_dir, per_minute=settings.max_per_minute,
                                               per_day=settings.max_per_day)
                settings = settings.with_(base_url=self._sandbox.base_url,
                                          api_key=self._sandbox.api_key)
            self._settings = settings
        return self._settings

    def account_settings(self) -> Settings:
        """Settings that name the account, without serving it: with --sandbox, the embedded
        sandbox's key and no emulator started (``quota`` reads only the account's ledger,
        which is found by the key alone)."""
        if self._settings is not None or not self.use_sandbox:
            return self.settings()
        from ..sandbox import EMBEDDED_KEY

        return Settings.from_env(**self.overrides).with_(api_key=EMBEDDED_KEY)

    def client(self, **kwargs):
        """The API client for these settings (requires a key, or --sandbox)."""
        if self._client is None:
            from ..api import IntakeQClient

            settings = self.settings()
            settings.require_key()
            self._client = IntakeQClient(settings, **kwargs)
        return self._client

    @property
    def requests_sent(self) -> int:
        """Requests this command sent (0 before a client was made)."""
        return self._client.requests_sent if self._client is not None else 0

    @property
    def has_client(self) -> bool:
        return self._client is not None

    def secrets(self) -> list[str]:
        key = (self._settings.api_key if self._settings else None) or self.overrides.get("api_key")
        return [key] if key else []

    def close(self) -> None:
        if self._client is not None and hasattr(self._client, "close"):
            self._client.close()
        if self._sandbox is not None:
            self._sandbox.stop()
            self._sandbox = None
