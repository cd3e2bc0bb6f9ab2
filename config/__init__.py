"""boxcut's configuration: one typed settings object read from the environment and `.env` at start."""

from config.settings import BoxAuthMode, Settings, SettingsError, load_settings

__all__ = ["BoxAuthMode", "Settings", "SettingsError", "load_settings"]
