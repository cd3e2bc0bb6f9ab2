"""The notification settings: the receivers' list (inline or from a file), Slack's receivers, the refusals, and
a receiver's URL as boxcut shows it (host only, and a fingerprint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, SettingsError, load_settings
from config.celery_settings import NOTIFY_QUEUE, SEND_QUEUE, celery_config
from config.notify_urls import NotifyURL, parse_notify_urls

SECRET = {"BOXCUT_NOTIFY_HMAC_SECRET": "s"}


def settings(**env: str) -> Settings:
    return load_settings(env, env_file=None)


def test_nothing_is_notified_by_default() -> None:
    loaded = settings()
    assert loaded.notify_urls == () and not loaded.notifies and loaded.public_url is None
    assert (loaded.notify_poll_seconds, loaded.notify_retry_seconds, loaded.notify_attempts) == (5.0, 10.0, 8)
    assert "boxcut-scan-notifications" not in celery_config(loaded)["beat_schedule"]


def test_urls_are_comma_or_newline_separated_and_slack_is_told_by_host_or_prefix() -> None:
    urls = parse_notify_urls("https://a.example.com/h1, https://hooks.slack.com/services/T/B/X\n"
                             "slack:https://chat.example.com/hooks/abc\n\n")
    assert [(u.url, u.slack) for u in urls] == [("https://a.example.com/h1", False),
                                                ("https://hooks.slack.com/services/T/B/X", True),
                                                ("https://chat.example.com/hooks/abc", True)]


def test_a_url_is_shown_by_scheme_host_and_port_with_a_fingerprint_never_its_path_or_query() -> None:
    url = NotifyURL("https://user:pw@hooks.example.com:8443/services/T/B/s3cr3t?token=abc")
    other = NotifyURL("https://hooks.example.com:8443/services/T/B/other")
    assert url.shown == "https://hooks.example.com:8443/…"
    assert len(url.fingerprint) == 12 and url.fingerprint != other.fingerprint
    assert "s3cr3t" not in repr(url) + url.describe() and "pw" not in url.describe()


def test_the_list_is_read_from_a_file(tmp_path: Path) -> None:
    listed = tmp_path / "notify_urls"
    listed.write_text("https://a.example.com/h1\nslack:https://b.example.com/h2\n")
    loaded = settings(BOXCUT_NOTIFY_URLS_FILE=str(listed), **SECRET)
    assert [u.slack for u in loaded.notify_urls] == [False, True] and loaded.notifies
    schedule = celery_config(loaded)["beat_schedule"]["boxcut-scan-notifications"]
    # The scan is a periodic task like the others: a backlog of deliveries on NOTIFY_QUEUE never delays it.
    assert schedule["options"]["queue"] == SEND_QUEUE != NOTIFY_QUEUE and schedule["schedule"] == 5.0


@pytest.mark.parametrize("bad", ["ftp://a.example.com/x", "https:///nohost", "a.example.com/hook",
                                 "https://a.example.com:port/x", "slack:hooks.slack.com/services/x"])
def test_a_url_that_is_not_http_with_a_host_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(SettingsError, match="BOXCUT_NOTIFY_URLS: URL #1") as refused:
        settings(BOXCUT_NOTIFY_URLS=bad, **SECRET)
    assert bad not in str(refused.value)


def test_a_receiver_that_is_not_slacks_needs_the_signing_secret() -> None:
    with pytest.raises(SettingsError, match="BOXCUT_NOTIFY_HMAC_SECRET: missing"):
        settings(BOXCUT_NOTIFY_URLS="https://a.example.com/h1")
    assert settings(BOXCUT_NOTIFY_URLS="https://hooks.slack.com/services/T/B/X").notify_hmac_secret is None


def test_the_secret_may_come_from_a_file_and_never_shows(tmp_path: Path) -> None:
    secret = tmp_path / "notify_secret"
    secret.write_text("from-a-file\n")
    loaded = settings(BOXCUT_NOTIFY_URLS="https://a.example.com/h1", BOXCUT_NOTIFY_HMAC_SECRET_FILE=str(secret))
    assert loaded.notify_hmac_secret is not None and loaded.notify_hmac_secret.reveal() == "from-a-file"
    assert "from-a-file" not in repr(loaded) and "a.example.com/h1" not in repr(loaded)


def test_the_tuning_and_the_public_url() -> None:
    loaded = settings(BOXCUT_NOTIFY_URLS="https://a.example.com/h1", BOXCUT_NOTIFY_POLL_SECONDS="0",
                      BOXCUT_NOTIFY_RETRY_SECONDS="0.5", BOXCUT_NOTIFY_ATTEMPTS="3",
                      BOXCUT_PUBLIC_URL="https://boxcut.example.com/", **SECRET)
    assert not loaded.notifies and "boxcut-scan-notifications" not in celery_config(loaded)["beat_schedule"]
    assert (loaded.notify_retry_seconds, loaded.notify_attempts) == (0.5, 3)
    assert loaded.public_url == "https://boxcut.example.com"
    with pytest.raises(SettingsError, match="BOXCUT_NOTIFY_ATTEMPTS"):
        settings(BOXCUT_NOTIFY_ATTEMPTS="0")
    with pytest.raises(SettingsError, match="BOXCUT_PUBLIC_URL"):
        settings(BOXCUT_PUBLIC_URL="boxcut.example.com")


def test_deliveries_go_to_the_notify_queue_never_the_send_queue() -> None:
    routes = celery_config(settings())["task_routes"]
    assert routes["boxcut.notify"] == {"queue": NOTIFY_QUEUE}
    assert routes["boxcut.scan_notifications"] == {"queue": SEND_QUEUE}
