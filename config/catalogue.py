"""The catalogue of settings: every variable boxcut reads, declared once (name, type, default, bounds, secret, doc).

`config/settings.py` reads the simple ones from their declaration alone and names the declaration of each custom
one; `python -m config.reference` makes docs/configuration.md and .env.example from it; tests/unit/config/
test_catalogue.py checks the three agree. A plain table rather than pydantic-settings: no new dependency, and the
reader's one-line errors, `NAME_FILE` secrets and cross-field checks stay exactly as they were.

An unknown `BOXCUT_*` variable stops the start (`unknown_setting`): a misspelled safety setting
(`BOXCUT_PROTECTED_USER`) that is silently ignored leaves accounts unprotected, which is worse than a refused start.
"""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config import defaults


class Kind(enum.StrEnum):
    """How a value is read; the first ones are read generically (`Setting.generic`)."""

    TEXT = "text"
    URL = "http(s) URL"
    INTEGER = "whole number"
    SECONDS = "seconds"  # a positive number below 86400
    SECONDS_OR_OFF = "seconds or off"  # the same, or 0 / off
    BOOLEAN = "on/off"
    CHOICE = "one of"
    LIST = "comma-separated list"
    SECRET = "secret"
    CREDENTIALS = "credential list"
    CUSTOM = "custom"  # read by its own reader in config/settings.py
    COMPOSE = "compose"  # read by docker-compose.yml only, never by boxcut


GENERIC_KINDS = frozenset({Kind.TEXT, Kind.URL, Kind.INTEGER, Kind.SECONDS, Kind.SECONDS_OR_OFF, Kind.BOOLEAN,
                           Kind.CHOICE, Kind.LIST, Kind.SECRET, Kind.CREDENTIALS})

# Names that start so are the test suite's and the benchmarks' own (e.g. BOXCUT_TEST_REDIS_URL): never settings.
RESERVED_PREFIX = "BOXCUT_TEST_"

# The one `Settings` field no variable of boxcut's fills: the embedded archive's file, in the user's data directory
# (XDG_DATA_HOME, else HOME's .local/share), wherever a command runs from.
UNDECLARED_FIELDS = frozenset({"archive_file"})

# A `Setting.compose` note that starts so: docker-compose.yml does not pass it from .env to the containers.
NOT_IN_COMPOSE = "not passed by docker-compose.yml"

NUMBER_LIMIT = 86400  # `Kind.SECONDS`: above 0 and below this


@dataclass(frozen=True)
class Group:
    """A section of the reference page and of .env.example."""

    title: str
    intro: str


@dataclass(frozen=True)
class Setting:
    """One variable: what it is called, how it is read, what it defaults to, and one line on what it does."""

    name: str
    group: Group
    doc: str
    kind: Kind = Kind.TEXT
    default: Any = None  # the typed default a generic read returns; None: unset
    low: int | None = None  # INTEGER bounds, inclusive
    high: int | None = None
    choices: tuple[str, ...] = ()  # CHOICE
    secret: bool = False  # may be given as NAME_FILE (a path, as Docker secrets are mounted); never shown
    fields: tuple[str, ...] = ()  # the `Settings` fields it fills (none: compose's own)
    default_text: str | None = None  # the default as the page shows it, when not the plain value
    type_text: str = ""  # a custom one's type as the page shows it
    example: str = ""  # a value as .env.example shows it, commented out
    compose: str = ""  # what docker-compose.yml does with it, for .env.example

    @property
    def generic(self) -> bool:
        """Read from its declaration alone (settings.py's `_Reader.value`), into its one field."""
        return self.kind in GENERIC_KINDS and len(self.fields) == 1

    @property
    def passed_by_compose(self) -> bool:
        """docker-compose.yml passes it from .env (or the shell) to the containers."""
        return self.kind is not Kind.COMPOSE and not self.compose.startswith(NOT_IN_COMPOSE)

    @property
    def names(self) -> tuple[str, ...]:
        """The names it may be set by: a secret's `NAME_FILE` too."""
        return (self.name, f"{self.name}_FILE") if self.secret else (self.name,)

    @property
    def shown_default(self) -> str:
        """The default as the page and .env.example show it ('' when unset)."""
        if self.default_text is not None:
            return self.default_text
        value = self.default
        if value is None or value == () or value == "":
            return ""
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, float):
            return f"{value:g}"
        if isinstance(value, tuple):
            return ",".join(str(item) for item in value)
        return str(value)

    @property
    def shown_type(self) -> str:
        """The type and bounds as the page shows them."""
        if self.kind is Kind.INTEGER:
            return f"whole number, {self.low} to {self.high}"
        if self.kind is Kind.SECONDS:
            return f"seconds, above 0 and below {NUMBER_LIMIT}"
        if self.kind is Kind.SECONDS_OR_OFF:
            return f"seconds (below {NUMBER_LIMIT}), or 0/off"
        if self.kind is Kind.CHOICE:
            return "one of " + ", ".join(choice.lower() for choice in self.choices)
        if self.kind is Kind.CUSTOM:
            plain = "on/off" if isinstance(self.default, bool) else "secret" if self.secret else "text"
            return self.type_text or plain
        if self.kind is Kind.COMPOSE:
            return "docker compose only"
        return self.kind.value


def _group(title: str, intro: str) -> Group:
    return Group(title, intro)


BOX = _group("Box", "A Box Platform app with server authentication: client credentials (Client Credentials Grant), "
             "a JWT app config, or a developer token. A developer token wins over JWT, JWT over client credentials. "
             "The app acts as an admin-capable service account (Manage users, Manage groups); Box documents no "
             "scope for session termination, so a 403 on a job's first call means the app lacks those rights.")
REDIS = _group("Redis and the broker", "Redis holds job records, the audit stream, the token cache, the rate limit "
               "and the send queue, and is the Celery broker unless BOXCUT_BROKER_URL names a RabbitMQ.")
ARCHIVE = _group("The archive", "Finished jobs leave Redis for a database; a packed copy stays in Redis a while "
                 "(status and listings read it from memory). Redis must hold the hot window: jobs a day x ~1,300 "
                 "bytes x BOXCUT_HOT_DAYS, within its maxmemory (`boxcut doctor` prints the headroom).")
SAFETY = _group("Safety policy", "Protection, the dry run, approval and the brake are decided again for each "
                "target right before its call. The brake across jobs holds a source's later targets for a person "
                "once it has terminated that many distinct users within the window (operators' jobs count but are "
                "never held).")
INTAKE = _group("Intake", "`POST /v1/alerts/{source}` and the operator API. Credentials are comma- or "
                "newline-separated lists (several at once, for rotation); `name:secret` names an entry for the "
                "audit (`splunk:soc-splunk`, `operator:alice`).")
SENDERS = _group("Senders", "Where a sender's payload names the person: a comma-separated list of field paths "
                 "that replaces the source's own list (see docs/intake.md).")
CALLS = _group("Box calls", "Targets are sent in batches under a rate limit every worker shares through Redis, "
               "with retries. A task run's hard time limit (BOXCUT_RUN_BUDGET_SECONDS + BOXCUT_RETRY_BUDGET_SECONDS "
               "+ BOXCUT_HTTP_READ_TIMEOUT + 15 s) must stay below BOXCUT_VISIBILITY_TIMEOUT (checked at start), and "
               "with RabbitMQ below its consumer_timeout (1800 s).")
DIRECTORY = _group("Directory copy, sweep, retention", "Large jobs resolve logins from a copy of the enterprise "
                   "directory (GET /users, 1,000 a page) instead of one lookup each; the periodic sweep restarts "
                   "what nobody carries.")
EVENTS = _group("Box's event stream", "Box Shield alerts and the watch after termination come from the "
                "enterprise event stream (see docs/box-shield.md).")
SSF = _group("Shared Signals", "SETs pushed to `POST /v1/ssf/events` (see docs/shared-signals.md).")
NOTIFY = _group("Notifications", "Jobs that wait for approval or end are announced to webhook receivers (see "
                "docs/notifications.md); approval from Slack adds Approve and Cancel buttons to Slack notices "
                "of a job that waits.")
REPORTS = _group("Evidence reports", "Signed evidence reports of a job (see docs/evidence-reports.md).")
CONSOLE = _group("The operator console", "Pages under /console of the intake (see docs/console.md). "
                 "With the console on, someone must be able to sign in: OpenID Connect, or operator tokens with "
                 "token sign-in on.")
LOGS = _group("Logs and images", "Logging, and the names docker compose reads for itself (boxcut ignores them).")

GROUPS = (BOX, REDIS, ARCHIVE, SAFETY, INTAKE, SENDERS, CALLS, DIRECTORY, EVENTS, SSF, NOTIFY, REPORTS, CONSOLE,
          LOGS)


def identity_paths_variable(source: str) -> str:
    """The variable that overrides a source's identity paths: `box-shield` → BOXCUT_IDENTITY_PATHS_BOX_SHIELD."""
    return "BOXCUT_IDENTITY_PATHS_" + source.upper().replace("-", "_")


def _identity_paths(source: str) -> Setting:
    return Setting(identity_paths_variable(source), SENDERS, f"field paths that name the person in a `{source}` "
                   "alert, replacing the built-in list", Kind.CUSTOM, type_text="comma-separated list",
                   fields=("identity_paths",), default_text="the built-in list", compose=NOT_IN_COMPOSE)


_S = Kind.SECONDS
_I = Kind.INTEGER

SETTINGS: tuple[Setting, ...] = (
    # -- Box --
    Setting("BOX_CLIENT_ID", BOX, "the app's client id (Client Credentials Grant)", Kind.CUSTOM,
            fields=("box_client_id",)),
    Setting("BOX_CLIENT_SECRET", BOX, "the app's client secret; needed with BOX_CLIENT_ID", Kind.CUSTOM, secret=True,
            fields=("box_client_secret",), compose="compose: BOX_CLIENT_SECRET_FILE=/run/secrets/box_client_secret"),
    Setting("BOX_ENTERPRISE_ID", BOX, "the enterprise the client credentials act in; needed with them",
            Kind.CUSTOM, fields=("box_enterprise_id",)),
    Setting("BOX_JWT_CONFIG_FILE", BOX, "JWT instead: the path of the app's JSON config from Box's developer console "
            "(holds the encrypted private key)", Kind.CUSTOM, type_text="path of a JSON file", fields=("box_jwt",),
            compose=NOT_IN_COMPOSE),
    Setting("BOX_DEVELOPER_TOKEN", BOX, "a developer token (trials: it expires in an hour and cannot be refreshed)",
            Kind.SECRET, secret=True, fields=("box_developer_token",), compose=NOT_IN_COMPOSE),
    Setting("BOX_API_BASE_URL", BOX, "Box's API; nothing in a request can point boxcut elsewhere (`boxcut dev` and "
            "the tests point it at boxsim)", Kind.URL, defaults.BOX_API_BASE_URL, fields=("box_api_base_url",),
            compose=NOT_IN_COMPOSE),
    Setting("BOX_OAUTH_URL", BOX, "Box's token endpoint", Kind.URL, defaults.BOX_OAUTH_URL,
            fields=("box_oauth_url",), compose=NOT_IN_COMPOSE),
    # -- Redis and the broker --
    Setting("BOXCUT_REDIS_URL", REDIS, "the Redis: `redis://`, `rediss://`, `unix://`, or `redis+sentinel://"
            "[[user]:password@]host[:port][,host[:port]…]/service[/db]` for a Redis behind Sentinels (port 26379, "
            "db 0 by default)", Kind.CUSTOM, defaults.REDIS_URL, type_text="Redis URL",
            fields=("redis_url", "sentinel"),
            compose="compose sets redis://redis:6379/0"),
    Setting("BOXCUT_REDIS_PASSWORD", REDIS, "the Redis password, joined to BOXCUT_REDIS_URL", Kind.CUSTOM,
            secret=True, type_text="secret", fields=("redis_url",),
            compose="compose: BOXCUT_REDIS_PASSWORD_FILE=/run/secrets/redis_password"),
    Setting("BOXCUT_REDIS_SENTINEL_PASSWORD", REDIS, "the Sentinels' own password, when they ask for one (only with "
            "redis+sentinel://)", Kind.CUSTOM, secret=True, type_text="secret", fields=("sentinel",),
            compose=NOT_IN_COMPOSE + "; docker-compose.sentinel.yml sets the _FILE form"),
    Setting("BOXCUT_REDIS_WAIT_REPLICAS", REDIS, "replicas that must hold a job's submission (and each count of a "
            "request to Box) before it counts: WAIT, up to 1 s", Kind.CUSTOM, low=0, high=16,
            type_text="whole number, 0 to 16", fields=("redis_wait_replicas",),
            default_text="1 with Sentinels, else 0"),
    Setting("BOXCUT_BROKER_URL", REDIS, "the Celery broker: unset (or the Redis URL) for the Redis, `amqp://user:pass"
            "@host:5672/vhost` for RabbitMQ (records, audit, rate limit and send queue stay in Redis)", Kind.CUSTOM,
            type_text="AMQP URL", fields=("rabbitmq_url",), default_text="the Redis"),
    Setting("BOXCUT_KEY_PREFIX", REDIS, "prefix of every key boxcut and its Redis broker write, so boxcut can share "
            "a Redis; workers on one prefix must talk to one Box", Kind.CUSTOM, defaults.KEY_PREFIX,
            fields=("key_prefix", "key_prefix_chosen"), default_text=f"{defaults.KEY_PREFIX} (`boxcut dev`: one of "
            "its own per run)"),
    # -- The archive --
    Setting("BOXCUT_ARCHIVE_URL", ARCHIVE, "the archive of finished jobs: `postgresql://USER:PASSWORD@HOST/DB` or "
            "`sqlite:///PATH` (one host only)", Kind.CUSTOM, secret=True, type_text="secret URL",
            fields=("archive_url",),
            default_text="an SQLite file, ~/.local/share/boxcut/archive.sqlite3 (under $XDG_DATA_HOME when set)",
            compose="compose: BOXCUT_ARCHIVE_URL_FILE=/run/secrets/archive_url (scripts/make-secrets)"),
    Setting("BOXCUT_HOT_DAYS", ARCHIVE, "how long (days, fractions allowed) a settled job's packed copy (~0.5-1.3 KB) "
            "stays in Redis after its creation", Kind.CUSTOM, defaults.HOT_DAYS, type_text="days, 0 to 365",
            fields=("hot_days",),
            default_text=f"{defaults.HOT_DAYS:g} (0 to 365)"),
    Setting("BOXCUT_SETTLE_SECONDS", ARCHIVE, "a finished job quiet this long settles into the archive", _S,
            defaults.SETTLE_SECONDS, fields=("settle_seconds",)),
    Setting("BOXCUT_ARCHIVE_EVERY_SECONDS", ARCHIVE, "how often the archive pass runs (ships the audit stream, "
            "settles quiet jobs, lets hot copies go)", _S, defaults.ARCHIVE_EVERY_SECONDS,
            fields=("archive_every_seconds",)),
    Setting("BOXCUT_RETENTION_DAYS", ARCHIVE, "finished jobs created longer ago leave the archive with their calls "
            "and audit trail", _I, defaults.RETENTION_DAYS, 1, 36500, fields=("retention_days",)),
    # -- Safety policy --
    Setting("BOXCUT_DRY_RUN", SAFETY, "global dry run: resolve and check policy, never terminate", Kind.BOOLEAN,
            False, fields=("dry_run",)),
    Setting("BOXCUT_PROTECTED_USERS", SAFETY, "logins or user ids never terminated", Kind.LIST, (),
            fields=("protected_users",)),
    Setting("BOXCUT_PROTECTED_GROUPS", SAFETY, "group names or ids whose members are never terminated", Kind.LIST, (),
            fields=("protected_groups",)),
    Setting("BOXCUT_APPROVAL_THRESHOLD", SAFETY, "blast radius (users, groups' members counted) above which a job "
            "waits for approval", _I, defaults.APPROVAL_THRESHOLD, 0, 10**6, fields=("approval_threshold",)),
    Setting("BOXCUT_BRAKE_USERS", SAFETY, "the brake across jobs: distinct users terminated per source within the "
            "window, past which that source's targets wait for a person (0: off)", _I, defaults.BRAKE_USERS, 0,
            10**7, fields=("brake_users",)),
    Setting("BOXCUT_BRAKE_TOTAL_USERS", SAFETY, "the same from all sources together (operators' jobs aside; 0: off)",
            _I, defaults.BRAKE_TOTAL_USERS, 0, 10**7, fields=("brake_total_users",)),
    Setting("BOXCUT_BRAKE_WINDOW_SECONDS", SAFETY, "the brake's sliding window", _I, defaults.BRAKE_WINDOW_SECONDS,
            10, 7 * 86400, fields=("brake_window_seconds",)),
    Setting("BOXCUT_BRAKE_SOURCE_USERS", SAFETY, "per-source limits for busy sources: `source=users` entries, a "
            "source named whole (`okta:soc-okta`) or by its route (`okta`), each below BOXCUT_BRAKE_TOTAL_USERS; 0 "
            "takes that source out of the brake", Kind.CUSTOM, type_text="source=users list",
            fields=("brake_source_users",), example="okta=100"),
    Setting("BOXCUT_ALLOWED_ADMINS", SAFETY, "logins or ids of Box admins and co-admins that may be terminated "
            "without approval", Kind.LIST, (), fields=("allowed_admins",)),
    Setting("BOXCUT_EXPAND_GROUPS", SAFETY, "record the member logins of every group an alert names, in its job",
            Kind.BOOLEAN, False, fields=("expand_groups",)),
    # -- Intake --
    Setting("BOXCUT_INTAKE_TOKENS", INTAKE, "bearer tokens senders may use; `name:token` names one", Kind.CREDENTIALS,
            secret=True, fields=("intake_tokens",), example="splunk:3f9…,okta:8c1…",
            compose="compose: BOXCUT_INTAKE_TOKENS_FILE=/run/secrets/intake_tokens"),
    Setting("BOXCUT_INTAKE_HMAC_SECRETS", INTAKE, "secrets for signed requests; `name:secret` names one",
            Kind.CREDENTIALS, secret=True, fields=("intake_hmac_secrets",),
            compose=NOT_IN_COMPOSE),
    Setting("BOXCUT_OPERATOR_TOKENS", INTAKE, "bearer tokens for the operator API (an intake token is not enough); "
            "`name:token` names one", Kind.CREDENTIALS, secret=True, fields=("operator_tokens",),
            example="alice:3f9…,bob:8c1…", compose="compose: BOXCUT_OPERATOR_TOKENS_FILE=/run/secrets/operator_tokens"),
    Setting("BOXCUT_QUERY_TOKEN_SOURCES", INTAKE, "sources that may authenticate with `?token=` (Splunk's stock "
            "webhook sends no headers)", Kind.CUSTOM, type_text="comma-separated list of sources",
            fields=("query_token_sources",), example="splunk"),
    Setting("BOXCUT_OKTA_EVENT_TYPES", INTAKE, "the Okta events that act", Kind.LIST, defaults.OKTA_EVENT_TYPES,
            fields=("okta_event_types",)),
    Setting("BOXCUT_INTAKE_MAX_BODY_BYTES", INTAKE, "larger alert bodies get 413 before they are read whole", _I,
            defaults.INTAKE_MAX_BODY_BYTES, 1024, 64 * 1024 * 1024, fields=("intake_max_body_bytes",)),
    Setting("BOXCUT_IDEMPOTENCY_TTL_SECONDS", INTAKE, "how long an event id or Idempotency-Key is remembered (never "
            f"less than {defaults.IDEMPOTENCY_MIN_TTL_SECONDS} s, the longest a signed request stays valid)", _I,
            defaults.IDEMPOTENCY_TTL_SECONDS, 60, 30 * 86400, fields=("idempotency_ttl_seconds",)),
    # -- Senders --
    *(_identity_paths(source) for source in defaults.ALERT_SOURCES),
    # -- Box calls --
    Setting("BOXCUT_RATE_LIMIT_PER_MINUTE", CALLS, "Box calls per minute, shared by every worker (Box allows about "
            "1,000 per user)", _I, defaults.RATE_LIMIT_PER_MINUTE, 1, 100_000, fields=("rate_limit_per_minute",)),
    Setting("BOXCUT_BATCH_SIZE", CALLS, "ids per terminate call", _I, defaults.BATCH_SIZE, 1, defaults.MAX_BATCH_SIZE,
            fields=("batch_size",)),
    Setting("BOXCUT_MAX_IN_FLIGHT", CALLS, "terminate calls in flight at once across every worker, and the threads "
            "each worker process carries them on", _I, defaults.MAX_IN_FLIGHT, 1, 64, fields=("max_in_flight",)),
    Setting("BOXCUT_CALL_CLAIM_SECONDS", CALLS, "how long a call taken from the send queue stays its sender's (a job "
            f"its run's: twice this) unless renewed, every third of it (at least {defaults.MIN_CALL_CLAIM_SECONDS:g})",
            _S, defaults.CALL_CLAIM_SECONDS, fields=("call_claim_seconds",)),
    Setting("BOXCUT_GATHER_SECONDS", CALLS, "while calls are scarce, a partial batch gathers for up to this long "
            "before it is sent; when plentiful the first target leaves at once", _S, defaults.GATHER_SECONDS,
            fields=("gather_seconds",)),
    Setting("BOXCUT_GIVE_UP_AFTER_SECONDS", CALLS, "how long a batch keeps being tried, in rounds, while Box answers "
            "5xx or does not answer", _S, defaults.GIVE_UP_AFTER_SECONDS, fields=("give_up_after_seconds",)),
    Setting("BOXCUT_MAX_CALLS_PER_BATCH", CALLS, "calls in one round of a batch (Box advises at most 5 retries)", _I,
            defaults.MAX_CALLS_PER_BATCH, 1, 50, fields=("max_calls_per_batch",)),
    Setting("BOXCUT_RETRY_BUDGET_SECONDS", CALLS, "waits up to this long are slept inside the task; longer ones "
            "become a Celery retry", _S, defaults.RETRY_BUDGET_SECONDS, fields=("retry_budget_seconds",)),
    Setting("BOXCUT_HTTP_CONNECT_TIMEOUT", CALLS, "seconds to connect to Box", _S,
            defaults.HTTP_CONNECT_TIMEOUT_SECONDS, fields=("http_connect_timeout",)),
    Setting("BOXCUT_HTTP_READ_TIMEOUT", CALLS, "a Box answer slower than this is a transport failure", _S,
            defaults.HTTP_READ_TIMEOUT_SECONDS, fields=("http_read_timeout",)),
    Setting("BOXCUT_RUN_BUDGET_SECONDS", CALLS, "a task run hands the rest of a long job to a fresh run after this",
            _I, defaults.RUN_BUDGET_SECONDS, 1, 86400, fields=("run_budget_seconds",)),
    Setting("BOXCUT_VISIBILITY_TIMEOUT", CALLS, "after this long Redis hands an unacknowledged task to another "
            "worker; must exceed a task run's hard time limit", _I, defaults.VISIBILITY_TIMEOUT_SECONDS, 10,
            7 * 86400, fields=("visibility_timeout",)),
    # -- Directory copy, sweep, retention --
    Setting("BOXCUT_DIRECTORY_CACHE_MIN_TARGETS", DIRECTORY, "before boxcut knows the enterprise's size: lookups "
            "waiting (across jobs) from which the directory is copied instead", _I,
            defaults.DIRECTORY_CACHE_MIN_TARGETS, 1, 10**7, fields=("directory_cache_min_targets",)),
    Setting("BOXCUT_DIRECTORY_CACHE_TTL_SECONDS", DIRECTORY, "how long that copy is kept in Redis", _I,
            defaults.DIRECTORY_CACHE_TTL_SECONDS, 10, 86400, fields=("directory_cache_ttl_seconds",)),
    Setting("BOXCUT_DIRECTORY_REFRESH_SECONDS", DIRECTORY, "how often the background task copies the directory "
            "again", _S, defaults.DIRECTORY_REFRESH_SECONDS, fields=("directory_refresh_seconds",)),
    Setting("BOXCUT_DIRECTORY_BACKGROUND_MAX_USERS", DIRECTORY, "enterprises up to this size are copied in the "
            "background; larger ones only when a job's lookups would cost more", _I,
            defaults.DIRECTORY_BACKGROUND_MAX_USERS, 0, 10**7, fields=("directory_background_max_users",)),
    Setting("BOXCUT_SWEEP_SECONDS", DIRECTORY, "how often the periodic sweep starts a sender for what nobody "
            "carries and re-enqueues idle jobs", _S, defaults.SWEEP_SECONDS, fields=("sweep_seconds",)),
    Setting("BOXCUT_STALE_JOB_SECONDS", DIRECTORY, "a queued or resolving job no run holds and unchanged this long is "
            "enqueued again by the sweep", _S, defaults.STALE_JOB_SECONDS, fields=("stale_job_seconds",)),
    # -- Box's event stream --
    Setting("BOXCUT_EVENTS_POLL_SECONDS", EVENTS, "how often Box's enterprise event stream is read; 0 turns the "
            "reader off", Kind.SECONDS_OR_OFF, defaults.EVENTS_POLL_SECONDS, fields=("events_poll_seconds",)),
    Setting("BOXCUT_EVENTS_POSITION_MAX_AGE_HOURS", EVENTS, "a kept stream position older than this (Box keeps the "
            "stream about two weeks) is dropped: reading starts again from now", _I,
            defaults.EVENTS_POSITION_MAX_AGE_HOURS, 1, 24 * 14, fields=("events_position_max_age_hours",)),
    Setting("BOXCUT_WATCH_MINUTES", EVENTS, "how long after Box accepted a user's termination their own events are "
            "recorded in the job (`activity_after`); 0: no watch", _I, defaults.WATCH_MINUTES, 0, 24 * 60,
            fields=("watch_minutes",)),
    Setting("BOXCUT_SHIELD_RULES", EVENTS, "a JSON list of rules deciding what a Box Shield alert does: terminate, "
            "wait for approval, or record only", Kind.CUSTOM, type_text="JSON", fields=("shield_rules",),
            default_text="the table in docs/box-shield.md",
            example='[{"category": "Ransomware Activity", "action": "terminate"}, {"action": "approve"}]'),
    Setting("BOXCUT_SHIELD_QUIET_HOURS", EVENTS, "no SHIELD_ALERT in the event stream for this long: `boxcut doctor` "
            "warns and boxcut_shield_alerts_silent is 1", _I, defaults.SHIELD_QUIET_HOURS, 1, 24 * 365,
            fields=("shield_quiet_hours",)),
    # -- Shared Signals --
    Setting("BOXCUT_SSF_TRANSMITTERS", SSF, "the path of a JSON file of the transmitters whose SETs are taken "
            "(issuer, audience, pinned algorithms, keys); unset: every SET is refused", Kind.CUSTOM,
            type_text="path of a JSON file", fields=("ssf_transmitters",),
            example="/run/secrets/ssf-transmitters.json"),
    Setting("BOXCUT_SSF_MAX_AGE_SECONDS", SSF, "a SET issued longer ago than this, or more than "
            f"{defaults.SSF_FUTURE_LEEWAY_SECONDS} s ahead, is refused; its jti is remembered at least this long", _I,
            defaults.SSF_MAX_AGE_SECONDS, 30, 86400, fields=("ssf_max_age_seconds",)),
    Setting("BOXCUT_SSF_JWKS_CACHE_SECONDS", SSF, "how long a transmitter's JWKS is kept (an unknown kid fetches it "
            "again, at most once a minute)", _I, defaults.SSF_JWKS_CACHE_SECONDS, 10, 86400,
            fields=("ssf_jwks_cache_seconds",)),
    # -- Notifications --
    Setting("BOXCUT_NOTIFY_URLS", NOTIFY, "receivers of notifications, comma- or newline-separated; `slack:` before "
            "a Slack-compatible one on another host (hooks.slack.com is known); the URLs hold secrets", Kind.CUSTOM,
            secret=True, type_text="secret list of URLs", fields=("notify_urls",),
            example="https://hooks.slack.com/services/T…/B…/…,https://soar.example.com/hooks/boxcut"),
    Setting("BOXCUT_NOTIFY_HMAC_SECRET", NOTIFY, "signs every notification (X-Boxcut-Signature); needed for any "
            "receiver that is not Slack's", Kind.CUSTOM, secret=True, fields=("notify_hmac_secret",)),
    Setting("BOXCUT_NOTIFY_POLL_SECONDS", NOTIFY, "how often the audit stream is followed for jobs to notify about; 0 "
            "turns notifications off", Kind.SECONDS_OR_OFF, defaults.NOTIFY_POLL_SECONDS,
            fields=("notify_poll_seconds",)),
    Setting("BOXCUT_NOTIFY_RETRY_SECONDS", NOTIFY, "a failed delivery is tried again after this, doubling up to 5 "
            "minutes", _S, defaults.NOTIFY_RETRY_SECONDS, fields=("notify_retry_seconds",)),
    Setting("BOXCUT_NOTIFY_ATTEMPTS", NOTIFY, "attempts of one delivery in all", _I, defaults.NOTIFY_ATTEMPTS, 1, 50,
            fields=("notify_attempts",)),
    Setting("BOXCUT_PUBLIC_URL", NOTIFY, "the intake as its users reach it, for links in notifications (relative "
            "when unset) and the console's sign-in redirect", Kind.CUSTOM, type_text="http(s) URL",
            fields=("public_url",),
            example="https://boxcut.example.com"),
    Setting("BOXCUT_SLACK_SIGNING_SECRET", NOTIFY, "the Slack app's signing secret, checked on POST "
            "/v1/slack/interactions (unset: that route answers 404)", Kind.CUSTOM, secret=True,
            fields=("slack_signing_secret",)),
    Setting("BOXCUT_SLACK_APPROVERS", NOTIFY, "who may approve from Slack: SLACK_USER_ID:name (or TEAM/USER:name) "
            "entries, recorded as slack:name; needed with the signing secret", Kind.CUSTOM,
            type_text="USER:name list", fields=("slack_approvers",), example="U012ABC:alice,U034DEF:bob"),
    # -- Evidence reports --
    Setting("BOXCUT_REPORT_SIGNING_KEY", REPORTS, "the Ed25519 private key (PEM, PKCS8, unencrypted) reports are "
            "signed with; unset: reports are unsigned, with a warning", Kind.CUSTOM, secret=True,
            type_text="secret PEM", fields=("report_signing_key",),
            compose="compose: BOXCUT_REPORT_SIGNING_KEY_FILE=/run/secrets/report_signing_key"),
    # -- The operator console --
    Setting("BOXCUT_CONSOLE", CONSOLE, "on: the intake serves the operator console under /console", Kind.CUSTOM,
            False, fields=("console",)),
    Setting("BOXCUT_CONSOLE_SESSION_SECRET", CONSOLE, "signs the session cookie (32+ characters, e.g. `openssl rand "
            "-hex 32`); required with `boxcut intake --workers` above 1", Kind.CUSTOM, secret=True,
            fields=("console_session_secret",), default_text="made per process"),
    Setting("BOXCUT_CONSOLE_SESSION_MINUTES", CONSOLE, "a console session ends this long after sign-in, however busy",
            _I, defaults.CONSOLE_SESSION_MINUTES, 5, 7 * 24 * 60, fields=("console_session_minutes",)),
    Setting("BOXCUT_OIDC_ISSUER", CONSOLE, "the organisation's OpenID Connect provider (https, plain http only on "
            "loopback); with the client id and secret, or none of the three", Kind.CUSTOM, type_text="https URL",
            fields=("oidc_issuer",),
            example="https://login.example.com/realms/staff"),
    Setting("BOXCUT_OIDC_CLIENT_ID", CONSOLE, "the console's confidential client there; its redirect URI is "
            "<BOXCUT_PUBLIC_URL>/console/auth/callback", Kind.CUSTOM, fields=("oidc_client_id",), example="boxcut"),
    Setting("BOXCUT_OIDC_CLIENT_SECRET", CONSOLE, "that client's secret", Kind.CUSTOM, secret=True,
            fields=("oidc_client_secret",)),
    Setting("BOXCUT_OIDC_ROLES_CLAIM", CONSOLE, "the ID token's claim (else userinfo's) whose values give a console "
            "role; dotted for a nested one (realm_access.roles)", Kind.CUSTOM, defaults.OIDC_ROLES_CLAIM,
            fields=("oidc_roles_claim",)),
    Setting("BOXCUT_OIDC_SCOPES", CONSOLE, "scopes asked for besides `openid profile email` (e.g. groups)",
            Kind.CUSTOM, type_text="space- or comma-separated list", fields=("oidc_scopes",)),
    Setting("BOXCUT_CONSOLE_APPROVERS", CONSOLE, "values of that claim that make an approver (approve, cancel, "
            "release the brake)", Kind.CUSTOM, type_text="comma-separated list", fields=("console_approvers",),
            example="boxcut-approvers"),
    Setting("BOXCUT_CONSOLE_VIEWERS", CONSOLE, "values of that claim that make a viewer (sees every page, changes "
            "nothing); anyone else is refused", Kind.CUSTOM, type_text="comma-separated list",
            fields=("console_viewers",), example="soc"),
    Setting("BOXCUT_CONSOLE_TOKEN_SIGNIN", CONSOLE, "sign in to the console with an operator token "
            "(BOXCUT_OPERATOR_TOKENS) as an approver", Kind.CUSTOM, True, fields=("console_token_signin",)),
    # -- Logs and images --
    Setting("BOXCUT_LOG_LEVEL", LOGS, "the lowest level logged", Kind.CHOICE, "INFO",
            choices=("DEBUG", "INFO", "WARNING", "ERROR"), fields=("log_level",)),
    Setting("BOXCUT_LOG_FORMAT", LOGS, "json: one JSON object a line (time, level, logger, message, and job_id, "
            "call_id, task… of what it is about), for a SIEM; text: for a person, the same fields as key=value",
            Kind.CUSTOM, choices=("AUTO", "JSON", "TEXT"), type_text="one of auto, json, text", fields=("log_format",),
            default_text="json off a terminal, text on one", compose="compose sets json"),
    Setting("BOXCUT_INTAKE_PORT", LOGS, "the host port docker compose publishes the intake on", Kind.COMPOSE, 8000),
    Setting("BOXCUT_IMAGE_TAG", LOGS, "the tag of the images docker compose builds and runs", Kind.COMPOSE, "local"),
    Setting("BOXCUT_FLOWER_PORT", LOGS, "the host port of Flower (the `flower` profile)", Kind.COMPOSE, 5555),
)

# Not boxcut's: docker compose alone reads it, for the Redis it runs. Listed in .env.example, with its reason.
REDIS_MAXMEMORY = ("REDIS_MAXMEMORY", "1gb")

BY_NAME = {setting.name: setting for setting in SETTINGS}
KNOWN_NAMES = frozenset(name for setting in SETTINGS for name in setting.names)


def setting(name: str) -> Setting:
    """The declaration of `name` (KeyError: it is not declared)."""
    return BY_NAME[name]


# Variables a platform sets for a service or container whose name starts `BOXCUT`, never settings: Kubernetes'
# service links (BOXCUT_INTAKE_SERVICE_HOST, BOXCUT_INTAKE_PORT_8000_TCP_ADDR, ...; on by default, one set for
# every Service of the namespace) and Docker's legacy links (BOXCUT_NAME, BOXCUT_ENV_..., the same _PORT_ ones).
_PLATFORM_NAMES = re.compile(r"^BOXCUT(_\w+?)?(_SERVICE_HOST|_SERVICE_PORT(_\w+)?|_PORT_\d+_(TCP|UDP|SCTP)"
                             r"(_ADDR|_PORT|_PROTO)?|_ENV_\w+)$")
_PLATFORM_VALUES = {"_PORT": re.compile(r"^(tcp|udp|sctp)://"), "_NAME": re.compile(r"^/")}


def platform_variable(name: str, value: str) -> bool:
    """Whether `name` is one a platform sets beside a service or container named boxcut-something (see
    _PLATFORM_NAMES); `_PORT` and `_NAME` only with the values those platforms give them."""
    if _PLATFORM_NAMES.match(name):
        return True
    return any(name.endswith(suffix) and pattern.match(value) for suffix, pattern in _PLATFORM_VALUES.items())


def unknown_setting(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The first `BOXCUT_*` name that is no setting, and the problem to report (with the nearest known name), or
    None. Refused rather than ignored: a misspelled safety setting that is silently ignored (BOXCUT_PROTECTED_USER)
    leaves accounts unprotected, which is worse than a refused start. `BOXCUT_TEST_*` is the test suite's, and
    what Kubernetes or Docker set for a service or container named so is theirs (`platform_variable`)."""
    for name in sorted(environ):
        if not name.startswith("BOXCUT_") or name in KNOWN_NAMES or name.startswith(RESERVED_PREFIX):
            continue
        if platform_variable(name, environ[name]):
            continue
        # compared without the prefix they all share, which would make any two names look alike
        tails = {known.removeprefix("BOXCUT_"): known for known in sorted(KNOWN_NAMES) if known.startswith("BOXCUT_")}
        close = difflib.get_close_matches(name.removeprefix("BOXCUT_"), tails, n=1)
        hint = f"did you mean {tails[close[0]]}?" if close else "docs/configuration.md lists the settings"
        return name, f"unknown setting; {hint}"
    return None
