"""Default values of boxcut's settings, each with the reason for its value."""

# Box's production endpoints; tests and `boxcut dev` point these at boxsim.
BOX_API_BASE_URL = "https://api.box.com/2.0"
BOX_OAUTH_URL = "https://api.box.com/oauth2/token"

# A Redis on this host, database 0: what `boxcut dev` and docker-compose provide.
REDIS_URL = "redis://127.0.0.1:6379/0"

# Every key boxcut writes, the Celery broker's included, starts with this, so boxcut can share a Redis.
KEY_PREFIX = "boxcut:"

# Box allows about 1,000 requests a minute per user; keep a margin for other tools on the same account.
RATE_LIMIT_PER_MINUTE = 900

# Box documents no maximum array length; 100 ids keeps one bad batch small and a 400 cheap to split.
BATCH_SIZE = 100
MAX_BATCH_SIZE = 1000

# Jobs whose users (groups' members counted) exceed this wait for an operator's approval.
APPROVAL_THRESHOLD = 25

# The brake across jobs (worker/jobs/brake.py): distinct users terminated per source, and from all sources, within
# the window, past which later targets wait for a person. A source is one sender (a route and its credential, an
# SSF issuer, the event-stream reader). 25 in 10 minutes is the per-job approval threshold again: a stream of
# one-user alerts is held where one alert naming as many people would be. A real compromise campaign reaches a
# handful of people from one source in ten minutes; tens already make an incident a person should see, and a
# leaked key or a misfiring identity provider reaches thousands. 100 from all sources lets several sources fire
# at once in a genuine incident before anyone is asked. Operators' offboarding counts but is never held.
BRAKE_USERS = 25
BRAKE_TOTAL_USERS = 100
BRAKE_WINDOW_SECONDS = 600

# Redis redelivers an unacknowledged task after this long. It must exceed any task run (bounded by
# RUN_BUDGET_SECONDS) and any retry countdown (bounded by MAX_COUNTDOWN_SECONDS), or a task runs twice at once.
VISIBILITY_TIMEOUT_SECONDS = 1800

# One task run works this long at most, then hands the rest of the job to a fresh run of itself.
RUN_BUDGET_SECONDS = 300

# A Celery retry never waits longer than this; a longer `retry-after` is asked for again after it.
MAX_COUNTDOWN_SECONDS = 600

# Box normally answers in well under a second; a read that takes 30 s is treated as a transport failure.
HTTP_CONNECT_TIMEOUT_SECONDS = 5.0
HTTP_READ_TIMEOUT_SECONDS = 30.0

# Waits up to this long are slept inside the task (tenacity); longer ones become a Celery retry.
RETRY_BUDGET_SECONDS = 30.0

# Box advises at most 5 retries of one request: 6 calls per batch in all, across task runs.
MAX_CALLS_PER_BATCH = 6

# Refresh a cached access token this long before Box's `expires_in` runs out.
TOKEN_REFRESH_MARGIN_SECONDS = 120

# -- HTTP intake ---------------------------------------------------------------------------------------------

# The senders whose own payloads `POST /v1/alerts/{source}` accepts.
ALERT_SOURCES = ("splunk", "sentinel", "elastic", "datadog", "panther", "sumologic", "okta", "box-shield")

# Larger alert bodies are refused (413) before they are read whole; real alerts are a few KiB.
INTAKE_MAX_BODY_BYTES = 1024 * 1024

# A sender's event id (or Idempotency-Key) is remembered this long: a repeat within it returns the first job.
IDEMPOTENCY_TTL_SECONDS = 24 * 3600

# A signed request older or newer than this is refused, so a captured request cannot be replayed later.
HMAC_TOLERANCE_SECONDS = 300
# The shortest an event key is ever remembered: as long as a signed request can still be accepted anywhere
# (a timestamp up to the tolerance ahead of a clock is accepted for twice the tolerance), plus a margin for
# intakes whose clocks differ. Below this, a captured signed request could be replayed inside its window.
IDEMPOTENCY_MIN_TTL_SECONDS = 2 * HMAC_TOLERANCE_SECONDS + 60

# Okta event types that name a person whose Box sessions should end.
OKTA_EVENT_TYPES = ("user.lifecycle.deactivate", "user.lifecycle.suspend", "user.account.lock")

INTAKE_HOST = "127.0.0.1"
INTAKE_PORT = 8000

# -- resolution at scale -------------------------------------------------------------------------------------

# A job naming at least this many users by login or id resolves them from a copy of the enterprise directory
# (GET /users, 1,000 a page) instead of one lookup each: 5,000 logins cost 5 calls, not 5,000.
DIRECTORY_CACHE_MIN_TARGETS = 200

# The copy is shared by every worker through Redis and kept this long; a login it lacks is looked up directly,
# so a user created since is still found.
DIRECTORY_CACHE_TTL_SECONDS = 600

# Terminate calls in flight at once across every worker: at Box's ~1,000 calls a minute (16 a second) and 150-300
# ms a call, 4 calls in flight keep a bulk job at the rate limit. Partial batches never run beside another call.
MAX_IN_FLIGHT = 4

# How long a call taken from the send queue, and a job a run works on, stay their holder's unless renewed: each
# worker process's heartbeat renews what it holds every third of this (worker/run/heartbeat.py), so a call whose
# sender died is sent again, and a job whose run died runs again, seconds after the death.
CALL_CLAIM_SECONDS = 6.0
MIN_CALL_CLAIM_SECONDS = 1.5

# While calls are scarce (within a minute of the rate limit having less than half its burst left, or of a 429
# pause's end), a partial batch gathers for up to this long (from its oldest target's queueing) before it is sent:
# calls then carry full batches instead of a few ids each. When calls are plentiful the first target leaves at once.
GATHER_SECONDS = 2.0

# How often the periodic sweep sends what no sender took (a sender that died, work left when a run's time ran out).
SWEEP_SECONDS = 10.0

# The background copy of the directory (resolving alerts without a lookup each): refreshed this often, for
# enterprises of at most this many users (20 pages a round, 4 calls a minute at most).
DIRECTORY_REFRESH_SECONDS = 300.0
DIRECTORY_BACKGROUND_MAX_USERS = 20_000

# How long a batch keeps being tried while Box answers 5xx or does not answer: an outage of minutes (or hours)
# ends in `accepted`, not `dead`. Rounds of BOXCUT_MAX_CALLS_PER_BATCH calls, with waits between them that grow
# with the outage, up to WAIT_OUT_MAX_SECONDS.
GIVE_UP_AFTER_SECONDS = 4 * 3600.0
WAIT_OUT_MAX_SECONDS = 300.0

# A queued or resolving job that no run holds and that has not changed for this long may have lost its task:
# the sweep enqueues it again (worker/run/sweeper.py).
STALE_JOB_SECONDS = 120.0

# How long finished jobs, their calls and the audit stream are kept (BOXCUT_RETENTION_DAYS): over a year, so a
# year of audit survives; and how often the periodic expiry runs.
RETENTION_DAYS = 400
EXPIRE_EVERY_SECONDS = 3600.0

# The archive (worker/archive, worker/jobs/archiving.py): finished jobs settle into it once quiet for
# SETTLE_SECONDS, and their packed copies stay in Redis for HOT_DAYS (status and listings read them from memory);
# the pass that moves them runs every ARCHIVE_EVERY_SECONDS. With no BOXCUT_ARCHIVE_URL, an SQLite file in the
# user's data directory ($XDG_DATA_HOME, else ~/.local/share, then ARCHIVE_SQLITE_FILE) is the archive, the same
# for every command of that user wherever it runs from: right for `boxcut dev` and one host, not for several.
HOT_DAYS = 7.0
SETTLE_SECONDS = 60.0
ARCHIVE_EVERY_SECONDS = 10.0
ARCHIVE_SQLITE_FILE = "boxcut/archive.sqlite3"

# RabbitMQ's default `consumer_timeout`: a delivery unacknowledged this long closes its channel. Task runs (their
# hard limit) and retry countdowns (MAX_COUNTDOWN_SECONDS) stay under it.
RABBITMQ_CONSUMER_TIMEOUT_SECONDS = 1800

# -- Box's event stream (worker/event_stream) ----------------------------------------------------------------------

# The enterprise event stream (admin_logs_streaming) is read this often; 0 turns the reader off. Box offers no
# long polling for enterprise events, and its stream lags the events themselves by seconds to minutes.
EVENTS_POLL_SECONDS = 10.0
# Box's most a page holds; a pass reads at most this many pages, then the next pass goes on.
EVENTS_PAGE_LIMIT = 500
EVENTS_MAX_PAGES_PER_PASS = 20

# Box keeps the streaming events about two weeks; a position kept longer than this is taken as past what Box
# holds, and the reader starts again from `now` (and says so).
EVENTS_POSITION_MAX_AGE_HOURS = 13 * 24

# After Box accepted a user's termination, the reader records that user's own events this long (BOXCUT_WATCH_
# MINUTES; 0 turns the watch off), and keeps looking this much longer for events Box logs late.
WATCH_MINUTES = 30
WATCH_LATE_EVENTS_SECONDS = 600

# No SHIELD_ALERT read from the stream for this long: doctor and a metric say the rules may not publish there.
SHIELD_QUIET_HOURS = 72

# A Box Shield alert's event id is Box's own: the stream and a SIEM relay name the same alert by it. It is kept
# as long as Box keeps the stream, and a day more, so a repeat Box sends late is still one job.
SHIELD_EVENT_KEY_TTL_SECONDS = 15 * 86400

# Shared Signals (POST /v1/ssf/events). A SET carries no `exp` (SSF forbids it), so its `iat` says how fresh it
# is: one older than this, or more than SSF_FUTURE_LEEWAY_SECONDS ahead of this clock, is refused. Its `jti` is
# remembered for at least as long, so a replay inside the window is refused as one.
SSF_MAX_AGE_SECONDS = 900
SSF_FUTURE_LEEWAY_SECONDS = 60
# A transmitter's JWKS fetched from its `jwks_uri` is kept this long; a `kid` it does not hold fetches it again,
# at most once per SSF_JWKS_REFETCH_SECONDS (a flood of unknown kids must not become a flood of fetches).
SSF_JWKS_CACHE_SECONDS = 300
SSF_JWKS_REFETCH_SECONDS = 60
SSF_JWKS_TIMEOUT_SECONDS = (3.05, 5.0)
# The whole fetch of a JWKS, wall-clock: resolving, connecting, the headers and the body, however slowly they come.
# No SET waits for another's fetch (worker/ssf/keys.py).
SSF_JWKS_DEADLINE_SECONDS = 10.0
# Keys from a jwks_uri that has failed since are trusted this long after the last fetch that worked: an outage
# at the transmitter is ridden out, a key it revoked (while its endpoint is blocked) is not trusted forever.
SSF_JWKS_MAX_STALE_SECONDS = 24 * 3600
SSF_JWKS_MAX_BYTES = 512 * 1024
# A SET is small: a compact JWS of a few claims. The push route reads no more than this.
SSF_MAX_BODY_BYTES = 64 * 1024

# -- Notifications (worker/notify) ---------------------------------------------------------------------------

# The audit stream is followed this often for jobs that wait for approval or end; 0 turns notifications off.
# A notification goes out within this, plus the queue's wait: seconds, against a person's minutes to react.
NOTIFY_POLL_SECONDS = 5.0
# Audit entries read per page, and pages at most per pass (the next pass goes on from the kept position).
NOTIFY_PAGE_LIMIT = 500
NOTIFY_MAX_PAGES_PER_PASS = 20
# A receiver that fails (5xx, 408, 429, no answer) is tried again after 10 s, 20 s, 40 s ... up to
# NOTIFY_MAX_BACKOFF_SECONDS apart, for NOTIFY_ATTEMPTS tries in all (about 20 minutes with these values).
NOTIFY_RETRY_SECONDS = 10.0
# A delivery not final and not touched for this long past its next attempt's time lost its task (a retry Celery
# could not publish while Redis was full, a worker lost with it): the scanner enqueues it again.
NOTIFY_STRANDED_SECONDS = 60.0
NOTIFY_ATTEMPTS = 8
NOTIFY_MAX_BACKOFF_SECONDS = 300.0
# A receiver is a webhook: it answers in well under a second, or it is treated as down and tried again later.
NOTIFY_TIMEOUT_SECONDS = (3.05, 10.0)
# One attempt holds a worker process at most this long (Celery's soft time limit), however slowly the receiver
# answers; past it the attempt counts as unanswered and is tried again.
NOTIFY_TASK_SOFT_SECONDS = 20.0

# -- The operator console (worker/console) -------------------------------------------------------------------

# A console session lasts this long from sign-in (BOXCUT_CONSOLE_SESSION_MINUTES): a working day.
CONSOLE_SESSION_MINUTES = 480
# The claim of the ID token whose values map to the console's roles (BOXCUT_OIDC_ROLES_CLAIM).
OIDC_ROLES_CLAIM = "groups"
# A session secret shorter than this is refused at start: it signs every console session.
CONSOLE_SESSION_SECRET_MIN_CHARS = 32
