"""The Box client against a scripted transport: terminate calls, retries, the cap, 401 refresh, lookups."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import fakeredis
import pytest
import requests

from config.settings import Settings
from tests.unit.fakes import (
    START,
    CountingFetcher,
    FakeClock,
    FakeTokens,
    Reply,
    Script,
    ScriptedAdapter,
    box_error,
    scripted_session,
)
from worker.box.answers import TERMINATE_ACCEPTED_MESSAGE, BoxGroup, BoxUser
from worker.box.auth import CachedTokenSource, TokenSource
from worker.box.client import BoxClient, _path
from worker.box.rate_limit import RateLimiter
from worker.errors import (
    BatchRetryLater,
    BoxAnswerMismatch,
    BoxPermanentError,
    BoxRetryableError,
    BoxUnauthorized,
    UnsafeRequest,
)

BASE = "https://box.test/2.0"
SETTINGS = Settings(box_api_base_url=BASE, box_oauth_url="https://box.test/oauth2/token", key_prefix="t:",
                    retry_budget_seconds=30.0, max_calls_per_batch=6)
ACCEPTED = Reply(202, {"message": TERMINATE_ACCEPTED_MESSAGE}, {"box-request-id": "rid-202"})


class Harness:
    """A BoxClient wired to a scripted transport, fakeredis, a fake clock and fake tokens."""

    def __init__(self, *replies: Script, settings: Settings = SETTINGS, tokens: TokenSource | None = None,
                 per_minute: int = 60_000, redis_client: fakeredis.FakeRedis | None = None) -> None:
        self.clock = FakeClock()
        self.redis = redis_client or fakeredis.FakeRedis()
        self.session, self.adapter = scripted_session(*replies)
        self.limiter = RateLimiter(self.redis, key_prefix="t:", per_minute=per_minute, clock=self.clock.time,
                                   sleep=self.clock.sleep)
        self.tokens = tokens or FakeTokens()
        self.client = BoxClient(session=self.session, settings=settings, tokens=self.tokens, limiter=self.limiter,
                                sleep=self.clock.sleep, clock=self.clock.time)

    @property
    def sent(self) -> list[requests.PreparedRequest]:
        return self.adapter.requests

    def query(self, index: int) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.sent[index].url or "").query).items()}

    def paused_for(self) -> float:
        raw: Any = self.redis.get("t:box:pause_until")
        return 0.0 if raw is None else int(raw) / 1000 - START


def user_entry(user_id: str, login: str, **extra: str) -> dict[str, str]:
    return {"type": "user", "id": user_id, "login": login, "name": login.split("@")[0], **extra}


def page(entries: list[dict[str, Any]], total: int, offset: int = 0, limit: int = 1000) -> Reply:
    return Reply(200, {"entries": entries, "total_count": total, "offset": offset, "limit": limit})


# -- terminate ------------------------------------------------------------------------------------------------

def test_terminate_users_accepted() -> None:
    box = Harness(ACCEPTED)
    result = box.client.terminate_users(["11", "22"])
    assert result.accepted and result.http_status == 202 and result.attempts == 1
    assert result.message == TERMINATE_ACCEPTED_MESSAGE and not result.exhausted
    assert result.endpoint == "/users/terminate_sessions" and result.request_id == "rid-202"
    request = box.sent[0]
    assert request.method == "POST" and request.url == f"{BASE}/users/terminate_sessions"
    assert box.adapter.bodies() == [{"user_ids": ["11", "22"], "user_logins": []}]
    assert request.headers["Authorization"] == "Bearer tok-1"
    assert request.headers["Content-Type"] == "application/json"
    assert box.adapter.timeouts == [(SETTINGS.http_connect_timeout, SETTINGS.http_read_timeout)]
    assert result.started_at.endswith("Z") and result.finished_at >= result.started_at


def test_terminate_groups_accepted() -> None:
    box = Harness(ACCEPTED)
    result = box.client.terminate_groups(["55"])
    assert result.accepted and result.endpoint == "/groups/terminate_sessions"
    assert box.sent[0].url == f"{BASE}/groups/terminate_sessions"
    assert box.adapter.bodies() == [{"group_ids": ["55"]}]


def test_503_twice_then_accepted_counts_three_attempts() -> None:
    box = Harness(box_error(503, "unavailable"), box_error(503, "unavailable"), ACCEPTED)
    result = box.client.terminate_users(["11"])
    assert result.accepted and result.attempts == 3
    assert len(box.clock.sleeps) == 2 and all(0 <= s <= 30 for s in box.clock.sleeps)


def test_403_is_permanent_after_one_call() -> None:
    box = Harness(box_error(403, "access_denied_insufficient_permissions", "Access denied", "rid-403"), ACCEPTED)
    result = box.client.terminate_users(["11"])
    assert not result.accepted and not result.exhausted
    assert (result.http_status, result.error_code, result.request_id) == (
        403, "access_denied_insufficient_permissions", "rid-403")
    assert result.message == "Access denied" and result.attempts == 1
    assert len(box.sent) == 1 and box.clock.sleeps == []


def test_400_keeps_boxs_words() -> None:
    box = Harness(box_error(400, "bad_request", "Users can not be NULL or EMPTY", "rid-400"))
    result = box.client.terminate_users([])
    assert (result.http_status, result.message, result.exhausted) == (400, "Users can not be NULL or EMPTY", False)


def _handed_back(box: Harness) -> BatchRetryLater:
    with pytest.raises(BatchRetryLater) as caught:
        box.client.terminate_users(["11"])
    return caught.value


def test_a_429_on_a_terminate_call_pauses_every_worker_and_hands_the_batch_back_without_sleeping() -> None:
    box = Harness(box_error(429, "rate_limit_exceeded", **{"retry-after": "2"}), ACCEPTED)
    handed = _handed_back(box)
    assert handed.rate_limited and handed.attempts == 1 and handed.delay == pytest.approx(2.0)
    assert box.clock.sleeps == [] and box.paused_for() == pytest.approx(2.0)


def test_a_429_on_a_lookup_sleeps_retry_after_and_pauses_every_worker() -> None:
    box = Harness(box_error(429, "rate_limit_exceeded", **{"retry-after": "2"}), Reply(200, user_entry("11", "a@b")))
    assert box.client.get_user("11") is not None
    assert box.clock.sleeps[0] >= 2.0 and sum(box.clock.sleeps) == pytest.approx(2.0)
    assert box.paused_for() == pytest.approx(2.0)


def test_429_retry_after_as_an_http_date() -> None:
    when = format_datetime(datetime.fromtimestamp(START + 3, UTC), usegmt=True)
    box = Harness(box_error(429, "rate_limit_exceeded", **{"retry-after": when}), ACCEPTED)
    assert _handed_back(box).delay == pytest.approx(3.0)


def test_retry_after_header_is_read_in_any_case() -> None:
    box = Harness(box_error(429, "rate_limit_exceeded", **{"Retry-After": "4"}), ACCEPTED)
    assert _handed_back(box).delay == pytest.approx(4.0)


def test_retry_after_beyond_budget_is_retry_later_without_sleeping() -> None:
    box = Harness(box_error(429, "rate_limit_exceeded", **{"retry-after": "120"}))
    with pytest.raises(BatchRetryLater) as caught:
        box.client.terminate_users(["11"], prior_attempts=2)
    assert caught.value.delay == pytest.approx(120.0)
    assert caught.value.attempts == 1
    assert box.clock.sleeps == []
    assert box.paused_for() == pytest.approx(120.0)


def test_a_pause_set_by_another_worker_defers_the_call() -> None:
    box = Harness(ACCEPTED)
    box.limiter.pause(300)
    with pytest.raises(BatchRetryLater) as caught:
        box.client.terminate_users(["11"], prior_attempts=1)
    assert caught.value.delay == pytest.approx(300.0) and caught.value.attempts == 0
    assert box.sent == []


def test_cap_reached_is_exhausted_with_the_last_status() -> None:
    box = Harness(*(box_error(503, "unavailable", request_id=f"rid-{i}") for i in range(6)))
    result = box.client.terminate_users(["11"])
    assert result.exhausted and not result.accepted
    assert (result.http_status, result.attempts, result.request_id) == (503, 6, "rid-5")
    assert len(box.sent) == 6


def test_cap_counts_attempts_of_earlier_runs() -> None:
    box = Harness(box_error(500, "internal"), box_error(502, "bad_gateway"), ACCEPTED)
    result = box.client.terminate_users(["11"], prior_attempts=4)
    assert result.exhausted and result.http_status == 502 and result.attempts == 6
    assert len(box.sent) == 2


def test_cap_already_spent_sends_nothing() -> None:
    box = Harness(ACCEPTED)
    result = box.client.terminate_groups(["55"], prior_attempts=6)
    assert result.exhausted and result.http_status is None and result.attempts == 6
    assert box.sent == []


def test_transport_errors_are_retried() -> None:
    box = Harness(requests.ConnectionError("reset"), requests.ReadTimeout("slow"), ACCEPTED)
    result = box.client.terminate_users(["11"])
    assert result.accepted and result.attempts == 3


def test_transport_errors_to_the_end_are_exhausted_without_status() -> None:
    box = Harness(*(requests.ConnectTimeout("no route") for _ in range(6)))
    result = box.client.terminate_users(["11"])
    assert result.exhausted and result.http_status is None and result.attempts == 6
    assert result.message is not None and "ConnectTimeout" in result.message


def test_401_refreshes_the_token_once_then_succeeds() -> None:
    redis_client, fetcher = fakeredis.FakeRedis(), CountingFetcher()
    tokens = CachedTokenSource(redis=redis_client, key_prefix="t:", fetcher=fetcher)
    expired = Reply(401, None, {"www-authenticate": 'Bearer realm="Service", error="invalid_token"'})
    box = Harness(expired, ACCEPTED, tokens=tokens, redis_client=redis_client)
    result = box.client.terminate_users(["11"])
    assert result.accepted
    assert box.adapter.bearer_tokens() == ["tok-1", "tok-2"]
    assert fetcher.calls == 2
    assert result.attempts == 2  # the refused request counts: Box answered it
    assert box.clock.sleeps == [0.0]


def test_a_second_401_is_unauthorized() -> None:
    box = Harness(Reply(401), Reply(401, {"type": "error", "status": 401, "code": "unauthorized"}), ACCEPTED)
    with pytest.raises(BoxUnauthorized) as caught:
        box.client.terminate_users(["11"])
    assert caught.value.status == 401 and caught.value.code == "unauthorized"
    assert len(box.sent) == 2
    assert isinstance(box.tokens, FakeTokens) and box.tokens.invalidated == ["tok-1", "tok-2"]


def test_401_on_the_last_allowed_call_is_exhausted_not_unauthorized() -> None:
    box = Harness(Reply(401), ACCEPTED)
    result = box.client.terminate_users(["11"], prior_attempts=5)
    assert result.exhausted and result.http_status == 401 and result.attempts == 6
    assert len(box.sent) == 1
    assert isinstance(box.tokens, FakeTokens) and box.tokens.invalidated == ["tok-1"]


def test_error_body_that_is_not_json_is_tolerated() -> None:
    box = Harness(Reply(502, text="<html>Bad Gateway</html>"), Reply(404, text="Not Found"))
    result = box.client.terminate_groups(["55"])
    assert (result.http_status, result.error_code, result.message) == (404, None, "Not Found")


def test_every_call_waits_for_the_shared_rate_limit() -> None:
    box = Harness(ACCEPTED, ACCEPTED, per_minute=60)
    box.client.terminate_users(["11"])
    box.client.terminate_users(["22"])
    # The default burst of a tenth of 60 lets 6 calls go at once; a seventh would wait.
    assert box.clock.sleeps == []
    box.adapter.add(*[ACCEPTED] * 5)
    for _ in range(5):
        box.client.terminate_users(["33"])
    assert sum(box.clock.sleeps) == pytest.approx(1.0, abs=0.01)


def test_tokens_never_reach_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    box = Harness(Reply(401), box_error(429, "rate_limit_exceeded", **{"retry-after": "1"}),
                  box_error(403, "forbidden"), Reply(401), Reply(401))
    with pytest.raises(BatchRetryLater):  # the 429, after a token refresh
        box.client.terminate_users(["11"])
    with pytest.raises(BoxPermanentError):  # the 403 ends the first lookup
        box.client.get_user("12")
    with pytest.raises(BoxUnauthorized) as caught:
        box.client.get_user("11")
    assert "tok-" not in caplog.text and "tok-" not in str(caught.value)
    assert "/users/terminate_sessions" in caplog.text


# -- lookups --------------------------------------------------------------------------------------------------

def test_find_users_by_login_is_an_exact_match_not_a_prefix() -> None:
    box = Harness(page([user_entry("1", "ann@example.com.au"), user_entry("2", "ann@example.com", role="admin")],
                       total=2))
    users = box.client.find_users_by_login("ann@example.com")
    assert users == [BoxUser(id="2", login="ann@example.com", name="ann", role="admin", status="active")]
    assert box.query(0) == {"filter_term": "ann@example.com", "user_type": "all", "limit": "1000",
                            "fields": "id,login,name,role,status"}
    assert urlsplit(box.sent[0].url or "").path == "/2.0/users"


def test_find_users_by_login_returns_case_duplicates() -> None:
    box = Harness(page([user_entry("1", "Ann@Example.com"), user_entry("2", "ann@example.com")], total=2))
    assert {u.id for u in box.client.find_users_by_login("ANN@example.COM")} == {"1", "2"}


def test_find_users_by_login_none() -> None:
    box = Harness(page([user_entry("1", "ann@example.com.au")], total=1))
    assert box.client.find_users_by_login("ann@example.com") == []


def test_empty_login_never_lists_every_user() -> None:
    box = Harness()
    assert box.client.find_users_by_login("  ") == []
    assert box.sent == []


def test_find_users_pages_through_every_offset() -> None:
    box = Harness(
        page([user_entry("1", "ann@example.com.au"), user_entry("2", "ann@example.com.br")], total=5, offset=0),
        page([user_entry("3", "ann@example.com.cn"), user_entry("4", "ann@example.com.de")], total=5, offset=2),
        page([user_entry("5", "ann@example.com")], total=5, offset=4),
    )
    assert [u.id for u in box.client.find_users_by_login("ann@example.com")] == ["5"]
    assert [box.query(i).get("offset") for i in range(3)] == [None, "2", "4"]


def test_find_users_follows_markers() -> None:
    box = Harness(
        Reply(200, {"entries": [user_entry("1", "bob@example.com")], "limit": 1000, "next_marker": "m-2"}),
        Reply(200, {"entries": [user_entry("2", "BOB@example.com")], "limit": 1000, "next_marker": None}),
    )
    assert [u.id for u in box.client.find_users_by_login("bob@example.com")] == ["1", "2"]
    assert box.query(1)["marker"] == "m-2"


def test_lookup_retries_a_5xx_then_reads_the_answer() -> None:
    box = Harness(box_error(500, "internal"), Reply(200, user_entry("9", "zed@example.com", status="inactive")))
    # No role in the answer: the client says so (None), and the policy then treats the user as an admin.
    assert box.client.get_user("9") == BoxUser(id="9", login="zed@example.com", name="zed", role=None,
                                               status="inactive")
    assert len(box.sent) == 2


def test_get_user_404_is_none() -> None:
    box = Harness(box_error(404, "not_found"))
    assert box.client.get_user("404404") is None


def test_lookup_permanent_error_is_raised_with_boxs_words() -> None:
    box = Harness(box_error(403, "access_denied_insufficient_permissions", request_id="rid-9"))
    with pytest.raises(BoxPermanentError) as caught:
        box.client.find_groups_by_name("Contractors")
    assert (caught.value.status, caught.value.code, caught.value.request_id) == (
        403, "access_denied_insufficient_permissions", "rid-9")


def test_lookup_retries_stop_at_the_cap() -> None:
    box = Harness(*(box_error(503, "unavailable") for _ in range(6)))
    with pytest.raises(BoxRetryableError):
        box.client.get_group("55")
    assert len(box.sent) == 6


# The last: fullwidth digits, which str.isdigit() accepts.
HOSTILE_IDS = ["..", ".", "", "me", "abc", "../../evil.example/x", "12/../me", "1" * 5000, " 12", "12?x=1",
               "\uff11\uff12\uff13"]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
@pytest.mark.parametrize("lookup", ["get_user", "get_group", "group_members"])
def test_an_id_that_is_not_a_box_id_is_refused_before_anything_is_sent(lookup: str, hostile: str) -> None:
    box = Harness(Reply(200, user_entry("9", "zed@example.com")))
    with pytest.raises(UnsafeRequest, match="not a Box id"):
        getattr(box.client, lookup)(hostile)
    assert box.sent == []


@pytest.mark.parametrize("segment", ["..", ".", ""])
def test_a_path_segment_that_would_move_the_path_is_refused(segment: str) -> None:
    with pytest.raises(UnsafeRequest, match="would change the request's path"):
        _path("users", segment)


def test_every_path_segment_is_encoded_whole() -> None:
    assert _path("users", "a/b?c#d%e", "x") == "/users/a%2Fb%3Fc%23d%25e/x"


@pytest.mark.parametrize("answer", [{"type": "user", "login": "zed@example.com"},
                                    user_entry("10", "zed@example.com"), user_entry("9000000001", "svc@box.com")])
def test_get_user_refuses_an_answer_about_another_user(answer: dict[str, str]) -> None:
    box = Harness(Reply(200, answer))
    with pytest.raises(BoxAnswerMismatch):
        box.client.get_user("9")


@pytest.mark.parametrize("answer", [{"type": "group", "name": "Sales"}, {"type": "group", "id": "56", "name": "x"}])
def test_get_group_refuses_an_answer_about_another_group(answer: dict[str, str]) -> None:
    box = Harness(Reply(200, answer))
    with pytest.raises(BoxAnswerMismatch):
        box.client.get_group("55")


def test_an_answer_with_the_id_as_a_number_is_the_same_id() -> None:
    box = Harness(Reply(200, {"type": "group", "id": 55, "name": "Sales"}))
    assert box.client.get_group("55") == BoxGroup(id="55", name="Sales")


def test_find_groups_by_name_exact_case_insensitive() -> None:
    groups = [{"type": "group", "id": "1", "name": "Contractors EU"},
              {"type": "group", "id": "2", "name": "contractors"}]
    box = Harness(page(groups, total=2))
    assert box.client.find_groups_by_name("Contractors") == [BoxGroup(id="2", name="contractors")]
    assert box.query(0)["filter_term"] == "Contractors"


def test_get_group_and_404() -> None:
    box = Harness(Reply(200, {"type": "group", "id": "55", "name": "Sales"}), box_error(404, "not_found"))
    assert box.client.get_group("55") == BoxGroup(id="55", name="Sales")
    assert box.client.get_group("56") is None


def test_group_members_pages_and_total() -> None:
    def membership(user_id: str) -> dict[str, Any]:
        return {"type": "group_membership", "id": f"m{user_id}", "role": "member",
                "user": {"type": "user", "id": user_id, "login": f"u{user_id}@example.com", "name": f"U{user_id}"}}

    box = Harness(page([membership("1"), membership("2")], total=3, offset=0),
                  page([membership("3")], total=3, offset=2))
    total, members = box.client.group_members("55")
    assert total == 3 and [m.id for m in members] == ["1", "2", "3"]
    assert members[0].login == "u1@example.com"
    assert urlsplit(box.sent[1].url or "").path == "/2.0/groups/55/memberships"
    assert box.query(1)["offset"] == "2"


def test_adapter_is_scripted() -> None:
    # Guards the fakes: an unscripted request must fail loudly, not hang or pass.
    adapter = ScriptedAdapter()
    session = requests.Session()
    session.mount("https://", adapter)
    with pytest.raises(AssertionError, match="unexpected request"):
        session.get(f"{BASE}/users")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_box_redirect_is_not_followed_so_the_token_never_leaves_for_another_host(status: int) -> None:
    elsewhere = "https://elsewhere.test/2.0/users/terminate_sessions"
    box = Harness(Reply(status, None, {"location": elsewhere}), ACCEPTED, ACCEPTED)
    result = box.client.terminate_users(["11"])
    assert not result.accepted and result.http_status == status
    assert [r.url for r in box.sent] == [f"{BASE}/users/terminate_sessions"]


def test_a_lookup_redirect_is_not_followed_either() -> None:
    moved = Reply(302, None, {"location": "https://elsewhere.test/2.0/users/9"})
    box = Harness(moved, Reply(200, user_entry("9", "z@x.io")))
    with pytest.raises(BoxPermanentError):
        box.client.get_user("9")
    assert [r.url for r in box.sent] == [f"{BASE}/users/9?fields=id%2Clogin%2Cname%2Crole%2Cstatus"]


def test_each_request_is_written_down_before_it_goes_and_one_that_cannot_be_is_not_sent() -> None:
    box = Harness(Reply(503, {"code": "unavailable"}), ACCEPTED)
    counted: list[int] = []
    result = box.client.terminate_users(["11"], before_send=lambda: counted.append(len(box.sent)))
    assert result.accepted and counted == [0, 1]  # each count came before its request reached Box

    refused = Harness(ACCEPTED)

    def redis_full() -> None:
        raise RuntimeError("OOM command not allowed")

    with pytest.raises(RuntimeError):
        refused.client.terminate_users(["11"], before_send=redis_full)
    assert refused.sent == []
