"""Settings: read once at start from the environment and `.env`, validated, handed down as one object.

Every variable name here is part of boxcut's contract, and each is declared once in config/catalogue.py (its type,
default, bounds, secrecy and doc); the simple ones are read from that declaration alone (`_Reader.value`), the rest
by a reader of their own below. A missing, malformed or unknown value raises `SettingsError`, whose message is one
line naming the variable.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from dotenv import dotenv_values

from config import catalogue, defaults
from config.credentials import NAME_PATTERN, Credential, DuplicateName, parse_credentials
from config.notify_urls import NotifyURL, parse_notify_urls
from config.secret import Secret
from config.sentinel import SentinelConfig, SentinelURLError, is_sentinel_url, parse_sentinel_url
from config.shield_rules import DEFAULT_RULES, ShieldRule, parse_rules
from config.ssf_transmitters import Transmitter, load_transmitters


class SettingsError(ValueError):
    """A setting is missing or malformed; the message is one line that names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class BoxAuthMode(enum.StrEnum):
    """How boxcut gets a Box access token."""

    CLIENT_CREDENTIALS = "client_credentials"
    JWT = "jwt"
    DEVELOPER_TOKEN = "developer_token"
    NONE = "none"


@dataclass(frozen=True)
class JWTAppConfig:
    """The parts of the app config JSON (downloaded from Box's developer console) that JWT auth uses."""

    client_id: str
    client_secret: Secret
    public_key_id: str
    private_key: Secret
    passphrase: Secret
    enterprise_id: str


@dataclass(frozen=True)
class Settings:
    """Everything boxcut reads from its environment, typed and validated."""

    box_client_id: str | None = None
    box_client_secret: Secret | None = None
    box_enterprise_id: str | None = None
    box_jwt: JWTAppConfig | None = None
    box_developer_token: Secret | None = None
    box_api_base_url: str = defaults.BOX_API_BASE_URL
    box_oauth_url: str = defaults.BOX_OAUTH_URL
    redis_url: str = defaults.REDIS_URL
    sentinel: SentinelConfig | None = None  # BOXCUT_REDIS_URL=redis+sentinel://…: Redis behind Sentinels
    redis_wait_replicas: int = 0  # replicas that must hold a submission (and a count of requests) before it counts
    rabbitmq_url: str | None = None  # BOXCUT_BROKER_URL=amqp://…: the Celery broker, instead of the Redis
    key_prefix: str = defaults.KEY_PREFIX
    key_prefix_chosen: bool = False  # BOXCUT_KEY_PREFIX is set: `boxcut dev` keeps it instead of one of its own
    # `name:secret` entries give a credential a name for the audit (config/credentials.py)
    intake_tokens: tuple[Credential, ...] = ()
    intake_hmac_secrets: tuple[Credential, ...] = ()
    operator_tokens: tuple[Credential, ...] = ()
    dry_run: bool = False
    protected_users: tuple[str, ...] = ()
    protected_groups: tuple[str, ...] = ()
    approval_threshold: int = defaults.APPROVAL_THRESHOLD
    brake_users: int = defaults.BRAKE_USERS  # 0: no per-source brake
    brake_total_users: int = defaults.BRAKE_TOTAL_USERS  # 0: no brake over all sources
    brake_window_seconds: int = defaults.BRAKE_WINDOW_SECONDS
    brake_source_users: Mapping[str, int] = field(default_factory=dict)  # per-source limits, by source or route
    rate_limit_per_minute: int = defaults.RATE_LIMIT_PER_MINUTE
    batch_size: int = defaults.BATCH_SIZE
    visibility_timeout: int = defaults.VISIBILITY_TIMEOUT_SECONDS
    http_connect_timeout: float = defaults.HTTP_CONNECT_TIMEOUT_SECONDS
    http_read_timeout: float = defaults.HTTP_READ_TIMEOUT_SECONDS
    retry_budget_seconds: float = defaults.RETRY_BUDGET_SECONDS
    max_calls_per_batch: int = defaults.MAX_CALLS_PER_BATCH
    run_budget_seconds: int = defaults.RUN_BUDGET_SECONDS
    log_level: str = "INFO"
    log_format: str | None = None  # json or text; None: text on a terminal, JSON elsewhere
    intake_max_body_bytes: int = defaults.INTAKE_MAX_BODY_BYTES
    idempotency_ttl_seconds: int = defaults.IDEMPOTENCY_TTL_SECONDS
    okta_event_types: tuple[str, ...] = defaults.OKTA_EVENT_TYPES
    identity_paths: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    query_token_sources: frozenset[str] = frozenset()
    allowed_admins: tuple[str, ...] = ()
    expand_groups: bool = False
    directory_cache_min_targets: int = defaults.DIRECTORY_CACHE_MIN_TARGETS
    directory_cache_ttl_seconds: int = defaults.DIRECTORY_CACHE_TTL_SECONDS
    max_in_flight: int = defaults.MAX_IN_FLIGHT
    call_claim_seconds: float = defaults.CALL_CLAIM_SECONDS
    gather_seconds: float = defaults.GATHER_SECONDS
    sweep_seconds: float = defaults.SWEEP_SECONDS
    give_up_after_seconds: float = defaults.GIVE_UP_AFTER_SECONDS
    stale_job_seconds: float = defaults.STALE_JOB_SECONDS
    directory_refresh_seconds: float = defaults.DIRECTORY_REFRESH_SECONDS
    directory_background_max_users: int = defaults.DIRECTORY_BACKGROUND_MAX_USERS
    retention_days: int = defaults.RETENTION_DAYS
    # BOXCUT_ARCHIVE_URL (or _FILE, it may hold a password): where finished jobs are archived; None: the embedded
    # SQLite file, `archive_file`
    archive_url: Secret | None = None
    archive_file: str = defaults.ARCHIVE_SQLITE_FILE
    hot_days: float = defaults.HOT_DAYS
    settle_seconds: float = defaults.SETTLE_SECONDS
    archive_every_seconds: float = defaults.ARCHIVE_EVERY_SECONDS
    events_poll_seconds: float = defaults.EVENTS_POLL_SECONDS  # 0: Box's event stream is not read
    events_position_max_age_hours: int = defaults.EVENTS_POSITION_MAX_AGE_HOURS
    watch_minutes: int = defaults.WATCH_MINUTES  # 0: no watch after termination
    shield_rules: tuple[ShieldRule, ...] = DEFAULT_RULES
    shield_quiet_hours: int = defaults.SHIELD_QUIET_HOURS
    # BOXCUT_REPORT_SIGNING_KEY (or _FILE): the Ed25519 private key (PEM, PKCS8) evidence reports are signed with
    report_signing_key: Secret | None = None
    ssf_transmitters: tuple[Transmitter, ...] = ()  # BOXCUT_SSF_TRANSMITTERS; none: POST /v1/ssf/events refuses
    ssf_max_age_seconds: int = defaults.SSF_MAX_AGE_SECONDS
    ssf_jwks_cache_seconds: int = defaults.SSF_JWKS_CACHE_SECONDS
    notify_urls: tuple[NotifyURL, ...] = ()  # BOXCUT_NOTIFY_URLS; none: no notifications
    notify_hmac_secret: Secret | None = None
    notify_poll_seconds: float = defaults.NOTIFY_POLL_SECONDS  # 0: no notifications
    notify_retry_seconds: float = defaults.NOTIFY_RETRY_SECONDS
    notify_attempts: int = defaults.NOTIFY_ATTEMPTS
    public_url: str | None = None  # the intake's external URL, for links in notifications; None: relative links
    # -- approval from Slack (worker/intake/slack_routes.py; docs/notifications.md) --
    slack_signing_secret: Secret | None = None  # the Slack app's signing secret; None: the Slack route is off
    # Slack user id (or `TEAM/USER`) -> the approver's name, recorded as `slack:<name>`; buttons when some are named
    slack_approvers: Mapping[str, str] = field(default_factory=dict)
    # -- the operator console (worker/console; docs/console.md) --
    console: bool = False  # BOXCUT_CONSOLE: the intake serves /console
    console_session_secret: Secret | None = None  # signs the session cookie; None: one made per process
    console_session_minutes: int = defaults.CONSOLE_SESSION_MINUTES
    oidc_issuer: str | None = None  # the organisation's OpenID Connect provider; None: no OIDC sign-in
    oidc_client_id: str | None = None
    oidc_client_secret: Secret | None = None
    oidc_roles_claim: str = defaults.OIDC_ROLES_CLAIM
    oidc_scopes: tuple[str, ...] = ()  # scopes asked for besides `openid profile email`
    console_approvers: frozenset[str] = frozenset()  # values of the roles claim that make an approver
    console_viewers: frozenset[str] = frozenset()  # values of the roles claim that make a viewer
    console_token_signin: bool = True  # sign in with an operator token (BOXCUT_OPERATOR_TOKENS) as an approver

    @property
    def oidc_configured(self) -> bool:
        """Whether the console offers sign-in with the organisation's OpenID Connect provider."""
        return self.oidc_issuer is not None

    @property
    def reads_events(self) -> bool:
        """Whether the event-stream reader runs (BOXCUT_EVENTS_POLL_SECONDS is not 0)."""
        return self.events_poll_seconds > 0

    @property
    def archive_location(self) -> str:
        """The archive's URL (the embedded SQLite file when BOXCUT_ARCHIVE_URL is not set). Holds any password:
        for the one place that connects; `worker.archive.Archive.where` is the form to show."""
        return self.archive_url.reveal() if self.archive_url else f"sqlite:///{self.archive_file}"

    @property
    def hot_seconds(self) -> float:
        return self.hot_days * 86400

    @property
    def notifies(self) -> bool:
        """Whether notifications go out: receivers are named and the audit stream is followed."""
        return bool(self.notify_urls) and self.notify_poll_seconds > 0

    @property
    def watch_seconds(self) -> float:
        """How long a terminated user's own events are recorded after Box accepted; 0 when nobody reads them."""
        return self.watch_minutes * 60.0 if self.reads_events else 0.0

    @property
    def box_auth_mode(self) -> BoxAuthMode:
        """Which credentials are set; a developer token wins over JWT, JWT over client credentials."""
        if self.box_developer_token:
            return BoxAuthMode.DEVELOPER_TOKEN
        if self.box_jwt is not None:
            return BoxAuthMode.JWT
        if self.box_client_id and self.box_client_secret:
            return BoxAuthMode.CLIENT_CREDENTIALS
        return BoxAuthMode.NONE

    @property
    def has_box_credentials(self) -> bool:
        """True when some way to get a Box token is configured."""
        return self.box_auth_mode is not BoxAuthMode.NONE

    @property
    def task_time_limits(self) -> tuple[float, float]:
        """Soft and hard time limits of one task run: its budget plus one Box call's worst overrun."""
        soft = self.run_budget_seconds + self.retry_budget_seconds + self.http_read_timeout + 5
        return soft, soft + 10

    @property
    def broker_url(self) -> str:
        """The Celery broker: RabbitMQ when BOXCUT_BROKER_URL names one, else the Redis that holds the records
        (through its Sentinels, in kombu's spelling, when BOXCUT_REDIS_URL names them)."""
        if self.rabbitmq_url:
            return self.rabbitmq_url
        return self.sentinel.kombu_url() if self.sentinel else self.redis_url

    @property
    def redis_shown(self) -> str:
        """The Redis, or the Sentinels and their service, as it may be printed or logged: no password."""
        return self.sentinel.describe() if self.sentinel else _without_password(self.redis_url)

    @property
    def broker_is_redis(self) -> bool:
        return self.rabbitmq_url is None


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Read settings from `environ` (default: the process environment) over the values of `env_file`.

    A `BOXCUT_*` variable that is no setting (config/catalogue.py) stops the start, naming the nearest one: a
    misspelled safety setting (BOXCUT_PROTECTED_USER) silently ignored would leave accounts unprotected, which is
    worse than a refused start. `BOXCUT_TEST_*` names are the test suite's and benchmarks' own, and ignored."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    unknown = catalogue.unknown_setting(merged)
    if unknown is not None:
        raise SettingsError(*unknown)
    return _Reader(merged).settings()


class _Reader:
    """Turns raw strings into typed values, raising `SettingsError` that names the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def settings(self) -> Settings:
        settings = self._read()
        hard_limit = settings.task_time_limits[1]
        if hard_limit >= settings.visibility_timeout:
            raise SettingsError(
                "BOXCUT_VISIBILITY_TIMEOUT",
                f"must exceed a task run's hard time limit ({hard_limit:.0f} s: BOXCUT_RUN_BUDGET_SECONDS plus "
                "BOXCUT_RETRY_BUDGET_SECONDS plus BOXCUT_HTTP_READ_TIMEOUT plus 15 s)",
            )
        if settings.rabbitmq_url and hard_limit >= defaults.RABBITMQ_CONSUMER_TIMEOUT_SECONDS:
            raise SettingsError(
                "BOXCUT_RUN_BUDGET_SECONDS",
                f"with RabbitMQ a task run's hard time limit ({hard_limit:.0f} s) must stay under its default "
                f"consumer_timeout ({defaults.RABBITMQ_CONSUMER_TIMEOUT_SECONDS} s), or it closes the channel of a "
                "task still running and delivers it again",
            )
        if settings.call_claim_seconds < defaults.MIN_CALL_CLAIM_SECONDS:
            raise SettingsError(
                "BOXCUT_CALL_CLAIM_SECONDS",
                f"must be at least {defaults.MIN_CALL_CLAIM_SECONDS:g} s: each worker process renews what it holds "
                "every third of it, and a claim shorter than a busy process's pause would pass to another worker",
            )
        return settings

    def _read(self) -> Settings:
        client_id, client_secret, enterprise_id = self._client_credentials()
        sentinel = self.sentinel()
        generic = {setting.fields[0]: self.value(setting) for setting in catalogue.SETTINGS if setting.generic}
        return Settings(
            **generic,
            box_client_id=client_id,
            box_client_secret=client_secret,
            box_enterprise_id=enterprise_id,
            box_jwt=self._jwt_config(),
            redis_url=self.redis_url(),
            sentinel=sentinel,
            redis_wait_replicas=self.integer("BOXCUT_REDIS_WAIT_REPLICAS", 1 if sentinel else 0,
                                             *_bounds("BOXCUT_REDIS_WAIT_REPLICAS")),
            rabbitmq_url=self.broker_url(),
            key_prefix=self.text("BOXCUT_KEY_PREFIX") or defaults.KEY_PREFIX,
            key_prefix_chosen=self.text("BOXCUT_KEY_PREFIX") is not None,
            brake_source_users=self._brake_source_users(),
            log_format=self.log_format(),
            identity_paths=self._identity_paths(),
            query_token_sources=self._query_token_sources(),
            archive_url=self._archive_url(),
            archive_file=self._archive_file(),
            hot_days=self._hot_days(),
            shield_rules=self._shield_rules(),
            report_signing_key=self._report_signing_key(),
            ssf_transmitters=self._ssf_transmitters(),
            **self._notifications(),
            **self._slack_interactivity(),
            **self._console(),
        )

    def _archive_url(self) -> Secret | None:
        """BOXCUT_ARCHIVE_URL: a PostgreSQL or SQLite SQLAlchemy URL (it may name a password, so it is a secret)."""
        url = self.secret("BOXCUT_ARCHIVE_URL")
        if url is not None and not url.reveal().startswith(("postgresql://", "postgres://", "postgresql+psycopg://",
                                                            "sqlite:///")):
            raise SettingsError("BOXCUT_ARCHIVE_URL", "expected postgresql://USER:PASSWORD@HOST/DB or sqlite:///PATH")
        return url

    def _archive_file(self) -> str:
        """The embedded archive's file: in the user's data directory, the same whichever directory a command runs
        from."""
        data = self.text("XDG_DATA_HOME") or str(Path(self.text("HOME") or Path.home()) / ".local" / "share")
        return str(Path(data) / defaults.ARCHIVE_SQLITE_FILE)

    def _hot_days(self) -> float:
        """BOXCUT_HOT_DAYS: a number of days, fractions allowed (a drill's hot window is seconds long)."""
        raw = self.text("BOXCUT_HOT_DAYS")
        if raw is None:
            return defaults.HOT_DAYS
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError("BOXCUT_HOT_DAYS", f"expected a number of days, got {raw!r}") from None
        if not 0 <= value <= 365:
            raise SettingsError("BOXCUT_HOT_DAYS", f"expected a number of days from 0 to 365, got {raw}")
        return value

    # -- typed readers -------------------------------------------------------------------------------------

    def value(self, setting: catalogue.Setting) -> Any:
        """A simple setting, read as its declaration says (config/catalogue.py)."""
        name, default = setting.name, setting.default
        match setting.kind:
            case catalogue.Kind.TEXT:
                return self.text(name) or default
            case catalogue.Kind.URL:
                return self.url(name, default)
            case catalogue.Kind.INTEGER:
                return self.integer(name, default, *_bounds(name))
            case catalogue.Kind.SECONDS:
                return self.number(name, default)
            case catalogue.Kind.SECONDS_OR_OFF:
                return self.seconds_or_off(name, default)
            case catalogue.Kind.BOOLEAN:
                return self.boolean(name, default)
            case catalogue.Kind.CHOICE:
                return self.choice(name, default, setting.choices)
            case catalogue.Kind.LIST:
                return self.text_list(name) or default
            case catalogue.Kind.SECRET:
                return self.secret(name)
            case catalogue.Kind.CREDENTIALS:
                return self.credentials(name)
        raise TypeError(f"{name} is read by a reader of its own ({setting.kind})")

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def url(self, name: str, default: str) -> str:
        value = self.text(name) or default
        if not value.startswith(("https://", "http://")):
            raise SettingsError(name, f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def redis_url(self) -> str:
        """BOXCUT_REDIS_URL, with BOXCUT_REDIS_PASSWORD (or `_FILE`, a Docker secret) as its password if set."""
        value = self.text("BOXCUT_REDIS_URL") or defaults.REDIS_URL
        if not value.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
            raise SettingsError("BOXCUT_REDIS_URL", "expected redis://, rediss://, unix:// or redis+sentinel://, "
                                f"got {_without_password(value)!r}")
        password = self.secret("BOXCUT_REDIS_PASSWORD")
        if password is None:
            return value
        parts = urlsplit(value)
        if parts.password is not None and unquote(parts.password) == password.reveal():
            return value  # already joined (a child process given both)
        if parts.password is not None or parts.scheme == "unix":
            raise SettingsError("BOXCUT_REDIS_PASSWORD", "BOXCUT_REDIS_URL names a password (or a socket) already")
        user = quote(unquote(parts.username), safe="") if parts.username else ""
        netloc = f"{user}:{quote(password.reveal(), safe='')}@{parts.netloc.rsplit('@', 1)[-1]}"
        return urlunsplit(parts._replace(netloc=netloc))

    def sentinel(self) -> SentinelConfig | None:
        """The Sentinels BOXCUT_REDIS_URL names (redis+sentinel://…), with BOXCUT_REDIS_SENTINEL_PASSWORD."""
        url, password = self.redis_url(), self.secret("BOXCUT_REDIS_SENTINEL_PASSWORD")
        if not is_sentinel_url(url):
            if password is not None:
                raise SettingsError("BOXCUT_REDIS_SENTINEL_PASSWORD", "is for Sentinels: BOXCUT_REDIS_URL names "
                                    "none (redis+sentinel://host:port,host:port/service)")
            return None
        try:
            return parse_sentinel_url(url, sentinel_password=password)
        except SentinelURLError as bad:
            raise SettingsError("BOXCUT_REDIS_URL", str(bad)) from None

    def log_format(self) -> str | None:
        """BOXCUT_LOG_FORMAT: json or text; unset (or auto) leaves it to whether stderr is a terminal."""
        chosen = self.choice("BOXCUT_LOG_FORMAT", "AUTO", catalogue.setting("BOXCUT_LOG_FORMAT").choices)
        return None if chosen == "AUTO" else chosen.lower()

    def broker_url(self) -> str | None:
        """BOXCUT_BROKER_URL: unset or the Redis URL (the Redis is the broker), or an AMQP URL (RabbitMQ)."""
        value = self.text("BOXCUT_BROKER_URL")
        if value is None or value in (self.redis_url(), self.text("BOXCUT_REDIS_URL")):
            return None
        if not value.startswith(("amqp://", "amqps://", "pyamqp://")):
            raise SettingsError("BOXCUT_BROKER_URL", "expected amqp:// or amqps:// (RabbitMQ), or the same URL as "
                                f"BOXCUT_REDIS_URL, got {_without_password(value)!r}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(name, f"expected a whole number from {low} to {high}, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(name, f"expected a whole number from {low} to {high}, got {value}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(name, f"expected a number of seconds, got {raw!r}") from None
        if not 0 < value < 86400:
            raise SettingsError(name, f"expected a positive number of seconds below 86400, got {raw}")
        return value

    def seconds_or_off(self, name: str, default: float) -> float:
        """A number of seconds, or 0 (also `off`) for a part that is turned off."""
        raw = self.text(name)
        if raw is not None and raw.lower() in ("0", "off"):
            return 0.0
        return self.number(name, default)

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(name, f"expected true or false, got {raw!r}")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (self.text(name) or default).upper()
        if value not in allowed:
            raise SettingsError(name, f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    def text_list(self, name: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in (self.text(name) or "").split(",") if item.strip())

    def secret(self, name: str) -> Secret | None:
        """A secret from `NAME`, or from the file named by `NAME_FILE` (as Docker secrets are mounted)."""
        value = self.text(name)
        file_name = self.text(f"{name}_FILE")
        if value is not None and file_name is not None:
            raise SettingsError(name, f"set either {name} or {name}_FILE, not both")
        if file_name is not None:
            value = _read_secret_file(f"{name}_FILE", file_name)
        return Secret(value) if value else None

    def credentials(self, name: str) -> tuple[Credential, ...]:
        """A list of secrets (comma- or newline-separated), each `secret` or `name:secret` (config/credentials.py),
        from `NAME` or `NAME_FILE`; a name given twice stops the start."""
        joined = self.secret(name)
        if joined is None:
            return ()
        try:
            return parse_credentials(joined.reveal())
        except DuplicateName as bad:
            raise SettingsError(name + ("_FILE" if self.text(f"{name}_FILE") else ""), str(bad)) from None

    # -- groups of settings that are checked together ------------------------------------------------------

    def _client_credentials(self) -> tuple[str | None, Secret | None, str | None]:
        client_id = self.text("BOX_CLIENT_ID")
        client_secret = self.secret("BOX_CLIENT_SECRET")
        enterprise_id = self.text("BOX_ENTERPRISE_ID")
        uses_jwt = self.text("BOX_JWT_CONFIG_FILE") is not None
        if client_id and not client_secret and not uses_jwt:
            raise SettingsError("BOX_CLIENT_SECRET", "missing: BOX_CLIENT_ID is set, so its secret is needed")
        if client_secret and not client_id:
            raise SettingsError("BOX_CLIENT_ID", "missing: BOX_CLIENT_SECRET is set without a client id")
        if client_id and client_secret and not enterprise_id and not uses_jwt:
            raise SettingsError("BOX_ENTERPRISE_ID", "missing: client credentials need the enterprise id")
        return client_id, client_secret, enterprise_id

    def _brake_source_users(self) -> dict[str, int]:
        """`BOXCUT_BRAKE_SOURCE_USERS`: `source=limit` entries, a source named whole (`okta:soc-okta`,
        `ssf:https://idp.example.com`) or by its route (`okta`); 0 turns that source's brake off."""
        name, limits = "BOXCUT_BRAKE_SOURCE_USERS", {}
        for entry in self.text_list(name):
            source, equals, limit = entry.rpartition("=")
            if not equals or not source.strip() or not limit.strip().isdigit():
                raise SettingsError(name, f"expected source=users entries, e.g. okta=200, got {entry!r}")
            limits[source.strip()] = int(limit)
        total = self.value(catalogue.setting("BOXCUT_BRAKE_TOTAL_USERS"))
        busiest = max(limits.items(), key=lambda item: item[1], default=None)
        if total and busiest and busiest[1] >= total:
            raise SettingsError(name, f"{busiest[0]}={busiest[1]} is not below BOXCUT_BRAKE_TOTAL_USERS ({total}): "
                                "that source alone would engage the brake for every source; raise the total, or "
                                "give the source 0 to take it out of the brake and the total")
        return limits

    def _identity_paths(self) -> dict[str, tuple[str, ...]]:
        """Per-source identity field paths from `BOXCUT_IDENTITY_PATHS_<SOURCE>` (e.g. ..._BOX_SHIELD)."""
        paths = {}
        for source in defaults.ALERT_SOURCES:
            listed = self.text_list(identity_paths_variable(source))
            if listed:
                paths[source] = listed
        return paths

    def _shield_rules(self) -> tuple[ShieldRule, ...]:
        """BOXCUT_SHIELD_RULES, the Box Shield rule table (config/shield_rules.py), or the default table."""
        raw = self.text("BOXCUT_SHIELD_RULES")
        if raw is None:
            return DEFAULT_RULES
        try:
            return parse_rules(raw)
        except ValueError as bad:
            raise SettingsError("BOXCUT_SHIELD_RULES", str(bad)) from None

    def _ssf_transmitters(self) -> tuple[Transmitter, ...]:
        """The Shared Signals transmitters in the file BOXCUT_SSF_TRANSMITTERS names (config/ssf_transmitters.py)."""
        name = self.text("BOXCUT_SSF_TRANSMITTERS")
        if name is None:
            return ()
        try:
            return load_transmitters(Path(name))
        except ValueError as bad:
            raise SettingsError("BOXCUT_SSF_TRANSMITTERS", str(bad)) from None

    def _report_signing_key(self) -> Secret | None:
        """BOXCUT_REPORT_SIGNING_KEY: checked here to be an Ed25519 private key, so a bad one stops the start, not
        the first report. A PEM in one line (its newlines written `\\n`, as some env files must) is taken too."""
        key = self.secret("BOXCUT_REPORT_SIGNING_KEY")
        if key is None:
            return None
        name = "BOXCUT_REPORT_SIGNING_KEY" + ("_FILE" if self.text("BOXCUT_REPORT_SIGNING_KEY_FILE") else "")
        pem = key.reveal().replace("\\n", "\n")
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # only when a key is set
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            parsed = load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise SettingsError(name, "expected an unencrypted PEM private key (PKCS8), e.g. from "
                                "`openssl genpkey -algorithm ed25519`") from None
        if not isinstance(parsed, Ed25519PrivateKey):
            raise SettingsError(name, f"expected an Ed25519 key, got {type(parsed).__name__.removeprefix('_')}")
        return Secret(pem)

    def _notifications(self) -> dict[str, Any]:
        """The notification settings, checked together: a receiver that is not Slack's needs the signing secret
        (a notification is signed, or it is not sent)."""
        urls = self._notify_urls()
        secret = self.secret("BOXCUT_NOTIFY_HMAC_SECRET")
        if secret is None and any(not url.slack for url in urls):
            raise SettingsError("BOXCUT_NOTIFY_HMAC_SECRET", "missing: BOXCUT_NOTIFY_URLS names a receiver that is "
                                "not Slack's, and notifications to it are signed with this secret")
        public_url = self.text("BOXCUT_PUBLIC_URL")
        return {
            "notify_urls": urls,
            "notify_hmac_secret": secret,
            "public_url": self.url("BOXCUT_PUBLIC_URL", "") if public_url else None,
        }

    def _console(self) -> dict[str, Any]:
        """The operator console's settings, checked together: with the console on, some way to sign in (OpenID
        Connect, or operator tokens with token sign-in on); an OpenID Connect provider named whole (issuer, client
        id and secret) and mapping some claim value to a role."""
        issuer = self.text("BOXCUT_OIDC_ISSUER")
        client_id = self.text("BOXCUT_OIDC_CLIENT_ID")
        client_secret = self.secret("BOXCUT_OIDC_CLIENT_SECRET")
        named = {"BOXCUT_OIDC_ISSUER": issuer, "BOXCUT_OIDC_CLIENT_ID": client_id,
                 "BOXCUT_OIDC_CLIENT_SECRET": client_secret}
        if any(named.values()):
            missing = [name for name, value in named.items() if not value]
            if missing:
                raise SettingsError(missing[0], "missing: the console's OpenID Connect sign-in needs the issuer, the "
                                    "client id and the client secret")
        approvers = frozenset(self.text_list("BOXCUT_CONSOLE_APPROVERS"))
        viewers = frozenset(self.text_list("BOXCUT_CONSOLE_VIEWERS"))
        if issuer and not approvers and not viewers:
            raise SettingsError("BOXCUT_CONSOLE_APPROVERS", "missing: name the values of BOXCUT_OIDC_ROLES_CLAIM "
                                "that make an approver (and BOXCUT_CONSOLE_VIEWERS a viewer); without them the "
                                "console refuses everyone who signs in with OpenID Connect")
        secret = self.secret("BOXCUT_CONSOLE_SESSION_SECRET")
        if secret is not None and len(secret.reveal()) < defaults.CONSOLE_SESSION_SECRET_MIN_CHARS:
            raise SettingsError("BOXCUT_CONSOLE_SESSION_SECRET", f"too short: at least "
                                f"{defaults.CONSOLE_SESSION_SECRET_MIN_CHARS} characters (e.g. `openssl rand -hex 32`)")
        console = self.boolean("BOXCUT_CONSOLE", False)
        token_signin = self.boolean("BOXCUT_CONSOLE_TOKEN_SIGNIN", True)
        if console and not issuer and not (token_signin and self.credentials("BOXCUT_OPERATOR_TOKENS")):
            raise SettingsError("BOXCUT_CONSOLE", "nobody could sign in: set BOXCUT_OIDC_ISSUER, "
                                "BOXCUT_OIDC_CLIENT_ID and BOXCUT_OIDC_CLIENT_SECRET, or BOXCUT_OPERATOR_TOKENS "
                                "(with BOXCUT_CONSOLE_TOKEN_SIGNIN on)")
        return {
            "console": console,
            "console_session_secret": secret,
            "oidc_issuer": self._oidc_issuer(issuer),
            "oidc_client_id": client_id,
            "oidc_client_secret": client_secret,
            "oidc_roles_claim": self.text("BOXCUT_OIDC_ROLES_CLAIM") or defaults.OIDC_ROLES_CLAIM,
            "oidc_scopes": tuple(s for s in (self.text("BOXCUT_OIDC_SCOPES") or "").replace(",", " ").split()
                                 if s not in ("openid", "profile", "email")),
            "console_approvers": approvers,
            "console_viewers": viewers,
            "console_token_signin": token_signin,
        }

    def _oidc_issuer(self, issuer: str | None) -> str | None:
        """The provider's issuer URL: https, except on this machine (a provider run for a test or a demo). Over
        plain http anyone on the path could swap its signing keys and sign themselves in as an approver."""
        if not issuer:
            return None
        url = self.url("BOXCUT_OIDC_ISSUER", "")
        parts = urlsplit(url)
        if parts.scheme != "https" and (parts.hostname or "") not in ("127.0.0.1", "localhost", "::1"):
            raise SettingsError("BOXCUT_OIDC_ISSUER", "expected an https:// URL (plain http only on loopback)")
        return url

    def _slack_interactivity(self) -> dict[str, Any]:
        """Approval from Slack: the signing secret Slack's requests are checked with, and who may approve there,
        checked together (a secret with no approver would turn on a door nobody may use: a setting forgotten)."""
        secret = self.secret("BOXCUT_SLACK_SIGNING_SECRET")
        approvers = self._slack_approvers()
        if secret is not None and not approvers:
            raise SettingsError("BOXCUT_SLACK_APPROVERS", "missing: BOXCUT_SLACK_SIGNING_SECRET turns on approval "
                                "from Slack, and nobody may approve there; name them as SLACK_USER_ID:name, e.g. "
                                "U012ABC:alice")
        return {"slack_signing_secret": secret, "slack_approvers": approvers}

    def _slack_approvers(self) -> dict[str, str]:
        """BOXCUT_SLACK_APPROVERS: `USER:name` entries (a Slack user id, from any workspace the app is in) or
        `TEAM/USER:name` (that workspace's user only), names as a named credential's (config/credentials.py)."""
        name, approvers = "BOXCUT_SLACK_APPROVERS", {}
        for entry in self.text_list(name):
            who, colon, approver = (part.strip() for part in entry.partition(":"))
            if not colon or not _SLACK_APPROVER_ID.fullmatch(who) or not NAME_PATTERN.fullmatch(approver):
                raise SettingsError(name, "expected SLACK_USER_ID:name or TEAM_ID/SLACK_USER_ID:name entries (ids "
                                    "as Slack shows them, e.g. U012ABC:alice; names of A-Z a-z 0-9 . _ @ -), got "
                                    f"{entry!r}")
            if who in approvers:
                raise SettingsError(name, f"the Slack user {who} is named twice; each may be named once")
            approvers[who] = approver
        return approvers

    def _notify_urls(self) -> tuple[NotifyURL, ...]:
        """BOXCUT_NOTIFY_URLS (or `_FILE`: the URLs hold secrets, Slack's path say), comma- or newline-separated."""
        listed = self.secret("BOXCUT_NOTIFY_URLS")
        if listed is None:
            return ()
        try:
            return parse_notify_urls(listed.reveal())
        except ValueError as bad:
            raise SettingsError("BOXCUT_NOTIFY_URLS", str(bad)) from None

    def _query_token_sources(self) -> frozenset[str]:
        name = "BOXCUT_QUERY_TOKEN_SOURCES"
        sources = frozenset(s.lower() for s in self.text_list(name))
        unknown = sorted(sources - set(defaults.ALERT_SOURCES))
        if unknown:
            expected = ", ".join(defaults.ALERT_SOURCES)
            raise SettingsError(name, f"unknown source {unknown[0]!r}; expected some of {expected}")
        return sources

    def _jwt_config(self) -> JWTAppConfig | None:
        name = "BOX_JWT_CONFIG_FILE"
        path = self.text(name)
        if path is None:
            return None
        try:
            document = json.loads(_read_secret_file(name, path))
            app, auth = document["boxAppSettings"], document["boxAppSettings"]["appAuth"]
            return JWTAppConfig(
                client_id=str(app["clientID"]),
                client_secret=Secret(str(app["clientSecret"])),
                public_key_id=str(auth["publicKeyID"]),
                private_key=Secret(str(auth["privateKey"])),
                passphrase=Secret(str(auth.get("passphrase") or "")),
                enterprise_id=str(document["enterpriseID"]),
            )
        except json.JSONDecodeError as exc:
            raise SettingsError(name, f"{path} is not JSON ({exc.msg} at line {exc.lineno})") from None
        except (KeyError, TypeError) as exc:
            raise SettingsError(name, f"{path} lacks {exc} (expected Box's app config JSON)") from None


# A Slack user id (U…, W… in an Enterprise Grid), optionally after its workspace's team id (T…): `T0123/U0456`.
_SLACK_APPROVER_ID = re.compile(r"(?:[A-Z0-9]{2,32}/)?[A-Z0-9]{2,32}")


def _bounds(name: str) -> tuple[int, int]:
    """A whole-number setting's bounds, as declared."""
    declared = catalogue.setting(name)
    assert declared.low is not None and declared.high is not None, name
    return declared.low, declared.high


identity_paths_variable = catalogue.identity_paths_variable


def _read_secret_file(variable: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(variable, f"cannot read {path}: {exc.strerror}") from None


def displayable_url(url: str) -> str:
    """A URL as it may be printed or logged: any password replaced by ***."""
    return _without_password(url)


def _without_password(url: str) -> str:
    """A URL as it may be shown: any password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
