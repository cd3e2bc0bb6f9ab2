"""`boxcut doctor`: check what boxcut needs, one line per check, saying what is wrong in words."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import redis
import requests

from config import BoxAuthMode, Settings, SettingsError
from worker.box.auth import token_fetcher_for
from worker.errors import BoxcutError

if TYPE_CHECKING:
    from worker.jobs.store import JobStore

Echo = Callable[[str], None]

# How long `doctor` waits for workers to answer a ping.
WORKER_PING_SECONDS = 2.0

# Fewer days of jobs than this fitting in Redis's free memory is a warning (and BoxcutRedisWillFill's threshold,
# deploy/prometheus/boxcut-rules.yml).
DAYS_LEFT_WARNING = 14

# More finished jobs than this waiting to settle is a warning (and BoxcutArchiveBehind's threshold).
WAITING_TO_SETTLE_WARNING = 1000


def run_checks(*, load: Callable[[], Settings], echo: Echo) -> bool:
    """Run every check in order, stopping at the first whose failure makes the rest meaningless."""
    try:
        settings = load()
    except SettingsError as exc:
        echo(f"FAIL settings: {exc}")
        return False
    echo(f"ok   settings: Box auth {settings.box_auth_mode.value}, API {settings.box_api_base_url}, "
         f"Redis {settings.redis_shown}, batch {settings.batch_size}, "
         f"rate limit {settings.rate_limit_per_minute}/min" + (", GLOBAL DRY RUN" if settings.dry_run else ""))
    if not _check_redis(settings, echo):
        return False
    _check_headroom(settings, echo)
    if not _check_broker(settings, echo):
        return False
    archive_ok = _check_archive(settings, echo)
    box_ok = _check_box(settings, echo)
    workers_ok = _check_workers(settings, echo) and _check_worker_boxes(settings, echo)
    _check_event_stream(settings, echo)
    _check_shared_signals(settings, echo)
    _check_brake(settings, echo)
    return workers_ok and box_ok and archive_ok


def _check_headroom(settings: Settings, echo: Echo, *, now: float | None = None) -> None:
    """Redis's memory against what the jobs need (worker/jobs/headroom.py): used against maxmemory, a settled
    job's bytes, jobs a day, the hot window's need, the days of jobs the free memory holds. Warnings only, but
    loud ones: a Redis at maxmemory (noeviction) refuses every write, and nobody is cut off."""
    from worker.connections import redis_client
    from worker.jobs.headroom import FULL_FRACTION, measure, size

    try:
        room = measure(_store(settings, redis_client(settings)), hot_days=settings.hot_days, now=now,
                       idempotency_ttl_seconds=settings.idempotency_ttl_seconds)
    except redis.RedisError as exc:
        echo(f"warn redis memory: cannot measure: {exc}")
        return
    echo(f"ok   redis memory: {room.describe()}")
    refuses = "Redis will refuse writes and containment stops"
    remedy = "raise Redis's maxmemory (REDIS_MAXMEMORY under compose) or lower BOXCUT_HOT_DAYS"
    if not room.limited:
        echo("warn redis memory: no maxmemory: Redis grows until the host runs out of memory and the kernel kills "
             "it, and containment stops; set maxmemory (with maxmemory-policy noeviction, as docker-compose.yml "
             "does) so that doctor and boxcut_redis_days_left see it coming")
        return
    if not room.fits:
        echo(f"warn redis memory: the {room.hot_days:g}-day hot window will not fit: at {room.jobs_per_day:,.0f} "
             f"jobs a day it grows by ~{size(room.hot_window_growth)} more, past {FULL_FRACTION:.0%} of maxmemory "
             f"({size(FULL_FRACTION * room.max_bytes)}); once it is full, {refuses}; {remedy}")
    if room.days_left is not None and room.days_left < DAYS_LEFT_WARNING:
        echo(f"warn redis memory: the {size(max(0, room.max_bytes - room.used_bytes))} free holds only "
             f"{room.days_left:,.1f} days of jobs at {room.jobs_per_day:,.0f} a day (under {DAYS_LEFT_WARNING}): "
             f"while the hot window fills, or should jobs stop leaving Redis (the archive down, no beat), Redis "
             f"fills that soon; once it is full, {refuses}; {remedy}")


def _check_archive(settings: Settings, echo: Echo) -> bool:
    """The archive (BOXCUT_ARCHIVE_URL, or the embedded SQLite file): reachable, its schema at this version's
    head, what it holds, and the finished jobs still waiting in Redis to settle into it. Named by
    `Archive.where`, never by the URL (it holds the password). A server that cannot be reached or whose schema is
    behind fails: the archive pass then moves nothing, and finished jobs pile up in Redis."""
    from worker.archive.store import ArchiveError, SchemaBehind
    from worker.connections import redis_client
    from worker.jobs.headroom import waiting_to_settle
    from worker.jobs.history import history_of

    store = _store(settings, redis_client(settings))
    waiting = waiting_to_settle(store)
    pending = ("1 finished job waits" if waiting == 1 else f"{waiting:,} finished jobs wait") + " in Redis to settle"
    try:
        archive = history_of(settings, store).archive
    except ArchiveError as exc:
        echo(f"FAIL archive: {exc}; nothing settles until it is fixed: {pending}")
        return False
    assert archive is not None  # history_of always names one
    sqlite_file = _embedded_file(settings.archive_location) if archive.embedded else None
    if sqlite_file is not None and not sqlite_file.exists():
        relative = "" if sqlite_file.is_absolute() else " (relative to the working directory)"
        echo(f"ok   archive: embedded SQLite file {archive.where}{relative} not made yet: the first archive pass "
             f"makes it; {pending}")
    else:
        try:
            archive.check_schema()
            held = archive.stats()
        except SchemaBehind as exc:
            echo(f"FAIL archive: {exc}; until then nothing settles: {pending}")
            return False
        except ArchiveError as exc:
            echo(f"FAIL archive: cannot read it: {exc}; nothing settles until it answers: {pending}")
            return False
        finally:
            archive.close()
        kind = "embedded SQLite file" if archive.embedded else "database"
        echo(f"ok   archive: {kind} {archive.where}, schema at head; holds {held['jobs']:,} jobs, "
             f"{held['calls']:,} calls, {held['audit_entries']:,} audit entries; {pending}")
    if archive.embedded:
        echo("note archive: an embedded SQLite file suits one host only: workers on other hosts would each archive "
             "to a file of their own; set BOXCUT_ARCHIVE_URL to a PostgreSQL database (docker-compose.yml runs one)")
    if waiting > WAITING_TO_SETTLE_WARNING:
        echo(f"warn archive: {pending} (more than {WAITING_TO_SETTLE_WARNING:,}): the archive pass may be behind; "
             f"is beat running (`boxcut beat`, or a worker without --no-beat)? Finished jobs holding failed targets "
             f"wait for the {settings.hot_days:g}-day hot window by design")
    return True


def _embedded_file(location: str) -> Path | None:
    return Path(location.removeprefix("sqlite:///")) if location.startswith("sqlite:///") else None


def _check_brake(settings: Settings, echo: Echo) -> None:
    """The brake across jobs: its limits, and each source it holds now with its held jobs (a warning: a person
    is needed). Says so when it is off."""
    from worker.connections import redis_client
    from worker.jobs import actions
    from worker.jobs.brake import Brake

    brake = Brake.from_settings(redis_client(settings), settings)
    limits = brake.limits
    if limits.off:
        echo("warn brake: off (BOXCUT_BRAKE_USERS=0, BOXCUT_BRAKE_TOTAL_USERS=0): nothing limits how many people "
             "a stream of alerts terminates")
        return
    shown = actions.brake_status(store=_store(settings, brake.redis), brake=brake, now_ms=int(time.time() * 1000))
    window = f"{limits.window_seconds / 60:g} min"
    engaged = [s for s in [shown["total"], *shown["sources"]] if s["engaged"]]
    held = [s for s in shown["sources"] if s["held_jobs"] and not s["engaged"]]
    if not engaged and not held:
        echo(f"ok   brake: {limits.per_source or 'off'} users per source, {limits.total or 'off'} in all, within "
             f"{window}; {shown['total']['users']:,} counted now, nothing held")
        return
    for state in engaged:
        name = "all sources" if state["source"] == "*" else f"source {state['source']}"
        echo(f"warn brake: ENGAGED for {name}: {state['users']:,} users in {window} (limit {state['limit']}), "
             f"{len(state['held_jobs']):,} jobs held; release with: boxcut brake release {state['source']}")
    for state in held:  # the engagement ended (a window without holds); its jobs still wait for a person
        echo(f"warn brake: {len(state['held_jobs']):,} jobs of source {state['source']} still wait for a person; "
             f"approve them, or release with: boxcut brake release {state['source']}")


def _store(settings: Settings, client: redis.Redis) -> JobStore:
    from worker.jobs.store import JobStore

    return JobStore.from_settings(client, settings)


def _check_shared_signals(settings: Settings, echo: Echo) -> None:
    """Each Shared Signals transmitter and whether its keys can be had: a `jwks_uri` that cannot be fetched
    refuses every SET from it (`invalid_key`). Warnings only: every other source works without it."""
    from config.ssf_transmitters import check_jwks
    from worker.ssf.keys import fetch_jwks

    for transmitter in settings.ssf_transmitters:
        algorithms = ", ".join(transmitter.algorithms)
        if transmitter.jwks_uri is None:
            echo(f"ok   shared signals: {transmitter.issuer}: {len(transmitter.jwks)} key(s) configured, {algorithms}")
            continue
        try:
            keys = check_jwks(fetch_jwks(transmitter.jwks_uri), "its JWKS")
        except Exception as error:  # httpx's, json's, the deadline's or check_jwks's refusal: said, not raised
            echo(f"warn shared signals: {transmitter.issuer}: cannot fetch its JWKS from {transmitter.jwks_uri} "
                 f"({type(error).__name__}: {str(error)[:200]}): its SETs are refused invalid_key")
            continue
        echo(f"ok   shared signals: {transmitter.issuer}: {len(keys)} key(s) from {transmitter.jwks_uri}, "
             f"{algorithms}")


def _check_event_stream(settings: Settings, echo: Echo, *, now: float | None = None) -> None:
    """What the event-stream reader last did: where it is, what stopped it, and whether Box Shield alerts come
    through it at all (they do only for the rules that publish to the event stream). Warnings only: boxcut
    still acts on alerts from every other source without it."""
    from worker.connections import redis_client
    from worker.event_stream.cursor import StreamCursor

    if not settings.reads_events:
        echo("ok   event stream: not read (BOXCUT_EVENTS_POLL_SECONDS=0): no Box Shield alerts from it, no watch "
             "after termination")
        return
    status = StreamCursor(redis_client(settings), key_prefix=settings.key_prefix).status()
    now = time.time() if now is None else now
    if status.last_read_at is None:
        echo(f"warn event stream: not read yet (every {settings.events_poll_seconds:g} s once beat runs)")
        return
    echo(f"ok   event stream: read {now - status.last_read_at:.0f} s ago, {status.events_read} events so far")
    if status.last_problem:
        echo(f"warn event stream: {status.last_problem}")
    if status.restarted_at is not None and status.restart_why and now - status.restarted_at < 86400:
        echo(f"warn event stream: started again from now {now - status.restarted_at:.0f} s ago: "
             f"{status.restart_why}")
    quiet = status.shield_quiet_seconds(now)
    if quiet is not None and quiet > settings.shield_quiet_hours * 3600:
        echo(f"warn box shield: no SHIELD_ALERT in the event stream for {quiet / 3600:.0f} hours "
             f"(BOXCUT_SHIELD_QUIET_HOURS={settings.shield_quiet_hours}): rules may not publish to the event "
             "stream; in Box's admin console turn on 'Publish alert to Box Event Stream' for each Shield rule")


def _check_workers(settings: Settings, echo: Echo) -> bool:
    """At least one worker answers, and the periodic sweep (Celery beat: `boxcut beat`, or inside a worker) has run
    lately."""
    from tasks.app import build_celery_app
    from worker.connections import redis_client
    from worker.jobs.store import JobStore

    answers = build_celery_app(settings).control.ping(timeout=WORKER_PING_SECONDS) or []
    if not answers:
        echo(f"FAIL workers: no worker answered within {WORKER_PING_SECONDS:.0f} s: jobs stay queued and nobody is "
             "cut off; start `boxcut worker` (on any host, against this Redis)")
        return False
    echo(f"ok   workers: {len(answers)} answered")
    last = JobStore.from_settings(redis_client(settings), settings).last_sweep()
    if last is None:
        echo("warn beat: no periodic sweep has run yet: a worker started a moment ago runs its first within "
             f"{settings.sweep_seconds:.0f} s; otherwise start `boxcut beat` (or a worker without --no-beat)")
        return True
    age = time.time() - last
    if age > 3 * settings.sweep_seconds + 5:
        echo(f"FAIL beat: the last periodic sweep ran {age:.0f} s ago (every {settings.sweep_seconds:.0f} s "
             "expected): start `boxcut beat` (or a worker without --no-beat), or nothing finds work that lost its "
             "task")
        return False
    echo(f"ok   beat: the periodic sweep ran {age:.0f} s ago")
    return True


def _check_worker_boxes(settings: Settings, echo: Echo) -> bool:
    """Every live worker on this prefix talks to the Box API and client these settings name (their heartbeats,
    worker/run/fleet.py): one that talks to another (boxsim, another app) would run jobs against the wrong Box."""
    from worker.connections import redis_client
    from worker.run.fleet import Fleet, Member, differences

    members = Fleet(redis_client(settings), key_prefix=settings.key_prefix).live()
    mine = Member.of(settings, worker="these settings")
    if not members:
        echo("warn worker box: no live worker keeps a heartbeat, so which Box they talk to is unknown")
        return True
    found = differences(mine, members)
    simulated = _simulated_box(settings)
    if (simulated and not settings.has_box_credentials and not found.other_client
            and all(m.box_api == simulated for m in found.other_api)):
        echo(f"warn worker box: {len(members)} live worker(s) talk to the dev stack's boxsim at {simulated} "
             "(SIMULATED); these settings name no Box")
        return True
    for other in found.other_api:
        echo(f"FAIL worker box: {other.describe()} talks to another Box API than {mine.box_api}")
    for other in found.other_client:
        echo(f"FAIL worker box: {other.describe()} uses another Box client than these settings ({mine.fingerprint})")
    if found:
        return False
    echo(f"ok   worker box: {len(members)} live worker(s) talk to {mine.box_api} with this client "
         f"({mine.fingerprint})")
    return True


def _check_redis(settings: Settings, echo: Echo) -> bool:
    from worker.connections import redis_client

    try:
        info, where = redis_client(settings).info(), _primary(settings)
    except (redis.RedisError, OSError) as exc:
        echo(f"FAIL redis: cannot reach {settings.redis_shown}: {exc}")
        return False
    notes = []
    replicas = int(info.get("connected_slaves", 0))
    if replicas < settings.redis_wait_replicas:
        notes.append(f"{replicas} replica(s) connected, BOXCUT_REDIS_WAIT_REPLICAS asks for "
                     f"{settings.redis_wait_replicas}: writes stand on the primary alone, and a failover may lose "
                     "the last of them")
    if str(info.get("aof_enabled", "0")) != "1":
        notes.append("AOF is off: a Redis restart loses queued jobs (production wants appendonly yes)")
    if info.get("maxmemory_policy") not in (None, "noeviction"):
        notes.append(f"maxmemory-policy is {info.get('maxmemory_policy')}: Redis may evict job records")
    echo(f"ok   redis: version {info.get('redis_version')}{where}, {replicas} replica(s)"
         + "".join(f"\nwarn redis: {n}" for n in notes))
    return True


def _primary(settings: Settings) -> str:
    """Where the Sentinels say the primary is (`, primary host:port via Sentinel`), or nothing without them."""
    from worker.connections import sentinels

    if settings.sentinel is None:
        return ""
    host, port = sentinels(settings.sentinel).discover_master(  # type: ignore[no-untyped-call]
        settings.sentinel.service)
    return f", primary {host}:{port} named by the Sentinels"


def _check_broker(settings: Settings, echo: Echo) -> bool:
    from tasks.app import build_celery_app

    try:
        with build_celery_app(settings).connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        echo(f"FAIL broker: {exc}")
        return False
    echo("ok   broker: Celery can connect")
    return True


def _simulated_box(settings: Settings) -> str | None:
    """The API URL of the boxsim that a `boxcut dev` running on this prefix uses as its Box, if one does."""
    from worker.cli.dev_stack import simulated_box_key
    from worker.connections import redis_client

    try:
        value = redis_client(settings).get(simulated_box_key(settings.key_prefix))
    except redis.RedisError:
        return None
    return value.decode() if isinstance(value, bytes) else value


def _check_box(settings: Settings, echo: Echo) -> bool:
    from worker.connections import redis_client
    from worker.runtime import box_client

    simulated = _simulated_box(settings)
    if not settings.has_box_credentials:
        if simulated:
            echo(f"warn box: these settings name no Box; the dev stack on this prefix uses boxsim at {simulated} "
                 "(SIMULATED): `. ./boxcut-dev.env` gives this shell the dev stack's settings")
            return True
        echo("FAIL box: no credentials: set BOX_CLIENT_ID/BOX_CLIENT_SECRET/BOX_ENTERPRISE_ID, "
             "BOX_JWT_CONFIG_FILE or BOX_DEVELOPER_TOKEN (or use `boxcut dev`, which simulates Box)")
        return False
    session = requests.Session()
    client = box_client(settings, redis_client(settings), session)
    try:
        if settings.box_auth_mode is BoxAuthMode.DEVELOPER_TOKEN:
            client.tokens.get()
        else:  # a fresh token request: a cached token would hide credentials that stopped working
            token_fetcher_for(settings, session).fetch()
        echo(f"ok   box token: issued by {settings.box_oauth_url} for these credentials")
        client.find_users_by_login("boxcut-doctor-check@invalid")
        echo("ok   box users: the account may list users (needed to resolve logins)")
    except BoxcutError as exc:
        echo(f"FAIL box: {exc}")
        return False
    if simulated == settings.box_api_base_url:
        echo(f"ok   box: SIMULATED: boxsim at {simulated}, the dev stack's simulator; nobody is really signed out")
        return True
    echo("note box terminate: Box offers no way to test the terminate permission without using it; "
         "a 403 on the first job means the app lacks the admin scope (Manage users / Manage groups)")
    return True
