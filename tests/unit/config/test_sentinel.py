"""Redis Sentinel settings: one URL names the Sentinels and the service; the job store and the broker both use it."""

from __future__ import annotations

import pytest

from config import SettingsError, load_settings
from config.celery_settings import celery_config
from config.secret import Secret
from config.sentinel import SentinelURLError, parse_sentinel_url

URL = "redis+sentinel://s1:26380,s2,10.0.0.3:26381/boxcut"


def test_a_sentinel_url_names_each_sentinel_the_service_and_the_database() -> None:
    config = parse_sentinel_url(URL)
    assert config.sentinels == (("s1", 26380), ("s2", 26379), ("10.0.0.3", 26381))
    assert (config.service, config.db, config.username, config.password) == ("boxcut", 0, None, None)
    assert parse_sentinel_url("redis+sentinel://[::1]:5000/svc/3").sentinels == (("::1", 5000),)
    assert parse_sentinel_url("redis+sentinel://[::1]:5000/svc/3").db == 3


def test_the_url_login_is_the_redis_servers_and_kombu_gets_it_on_every_sentinel() -> None:
    config = parse_sentinel_url("redis+sentinel://app:p%40ss@s1:1,s2:2/boxcut/2")
    assert config.username == "app" and config.password == Secret("p@ss")
    assert config.kombu_url() == "sentinel://app:p%40ss@s1:1/2"  # the others: transport option `sentinels`
    assert config.describe() == "redis+sentinel://s1:1,s2:2/boxcut/2"  # printable: no password
    assert "p@ss" not in repr(config) and "p%40ss" not in config.describe()


@pytest.mark.parametrize(("url", "problem"), [
    ("redis+sentinel://s1:26379", "names no service"),
    ("redis+sentinel://s1:26379/", "names no service"),
    ("redis+sentinel://s1:99999/boxcut", "port must be from 1 to 65535"),
    ("redis+sentinel://s1:26379,/boxcut", "must be host or host:port"),
    ("redis+sentinel://s1:port/boxcut", "must be host or host:port"),
    ("redis+sentinel://s1/boxcut/x", "database must be a number"),
    ("redis+sentinel://s1/boxcut/\u0967", "database must be a number"),  # a digit, but not 0-9
    ("redis+sentinel://s1:1[::1/boxcut", "must be host or host:port"),
    ("redis+sentinel://s1/boxcut/0/more", "expected /service or /service/db"),
    ("redis+sentinel://s1/bad%20name", "service name is letters"),
    ("redis+sentinel://s1/boxcut?db=1", "takes no query"),
])
def test_a_bad_sentinel_url_is_refused_saying_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(SentinelURLError, match=problem):
        parse_sentinel_url(url)
    with pytest.raises(SettingsError, match=f"BOXCUT_REDIS_URL: .*{problem}"):
        load_settings({"BOXCUT_REDIS_URL": url}, env_file=None)


def test_settings_with_sentinels_wait_for_a_replica_and_hand_kombu_its_sentinel_urls() -> None:
    settings = load_settings({"BOXCUT_REDIS_URL": URL, "BOXCUT_REDIS_PASSWORD": "pw",
                              "BOXCUT_REDIS_SENTINEL_PASSWORD": "spw"}, env_file=None)
    assert settings.sentinel is not None and settings.sentinel.password == Secret("pw")
    assert settings.sentinel.sentinel_password == Secret("spw")
    assert settings.redis_wait_replicas == 1 and settings.broker_is_redis
    assert settings.broker_url == "sentinel://:pw@s1:26380/0"
    config = celery_config(settings)
    assert config["broker_transport"] == "tasks.broker:SentinelTransport"
    options = config["broker_transport_options"]
    assert options["master_name"] == "boxcut" and options["sentinel_kwargs"]["password"] == "spw"
    assert options["sentinels"] == [["s1", 26380], ["s2", 26379], ["10.0.0.3", 26381]]
    assert options["global_keyprefix"] == settings.key_prefix  # the Redis transport's options all still apply


def test_without_sentinels_nothing_waits_for_replicas_unless_asked() -> None:
    plain = load_settings({}, env_file=None)
    assert plain.sentinel is None and plain.redis_wait_replicas == 0
    assert celery_config(plain)["broker_transport"] == "tasks.broker:Transport"
    assert "master_name" not in celery_config(plain)["broker_transport_options"]
    assert load_settings({"BOXCUT_REDIS_WAIT_REPLICAS": "2"}, env_file=None).redis_wait_replicas == 2
    assert load_settings({"BOXCUT_REDIS_URL": URL, "BOXCUT_REDIS_WAIT_REPLICAS": "0"},
                         env_file=None).redis_wait_replicas == 0


def test_a_sentinel_password_without_sentinels_is_refused() -> None:
    with pytest.raises(SettingsError, match="BOXCUT_REDIS_SENTINEL_PASSWORD: is for Sentinels"):
        load_settings({"BOXCUT_REDIS_SENTINEL_PASSWORD": "spw"}, env_file=None)


def test_a_refused_redis_url_never_repeats_its_password() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({"BOXCUT_REDIS_URL": "http://:hunter2@redis:6379/0"}, env_file=None)
    assert "hunter2" not in str(refused.value) and "***" in str(refused.value)
    for url in ("redis+sentinel://:hun/ter2@s1:x/boxcut", "redis+sentinel://:hun#ter2@s1/", "redis+sentinel://"
                ":hun?ter2@s1:1,[bad/boxcut", "redis+sentinel://:hun/ter2@s1/boxcut/0/1"):
        with pytest.raises(SettingsError) as refused:
            load_settings({"BOXCUT_REDIS_URL": url}, env_file=None)
        assert "hun" not in str(refused.value) and "ter2" not in str(refused.value), str(refused.value)


def test_a_password_may_hold_any_character_raw_or_encoded() -> None:
    for url in ("redis+sentinel://:p@s/s#w?,d@s1,s2:2/boxcut/2", "redis+sentinel://:p%40s%2Fs%23w%3F%2Cd@s1,s2:2/boxcut/2"):
        config = parse_sentinel_url(url)
        assert config.password == Secret("p@s/s#w?,d") and config.sentinels == (("s1", 26379), ("s2", 2))
        assert config.db == 2 and "p@s" not in config.describe()


def test_a_broker_connection_that_fails_keeps_the_mended_sentinel_transport() -> None:
    """kombu switches a connection with alternates (`a;b`) to the next one after a failed attempt, re-reading the
    transport from the URL's scheme: kombu's own, without boxcut's mends. One URL has no alternates to switch to."""
    from tasks import broker
    from tasks.app import build_celery_app

    app = build_celery_app(load_settings({"BOXCUT_REDIS_URL": URL}, env_file=None))
    for connection in (app.connection_for_write(), app.connection_for_read()):
        connection.maybe_switch_next()  # what a failed attempt does
        assert connection.get_transport_cls() is broker.SentinelTransport


def test_what_is_shown_of_the_redis_never_holds_a_password() -> None:
    plain = load_settings({"BOXCUT_REDIS_URL": "redis://redis:6379/0", "BOXCUT_REDIS_PASSWORD": "pw"}, env_file=None)
    assert plain.redis_shown == "redis://:***@redis:6379/0"
    behind = load_settings({"BOXCUT_REDIS_URL": URL, "BOXCUT_REDIS_PASSWORD": "pw"}, env_file=None)
    assert behind.redis_shown == "redis+sentinel://s1:26380,s2:26379,10.0.0.3:26381/boxcut/0"
