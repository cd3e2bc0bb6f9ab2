"""The brake's counting (worker/jobs/brake.py): distinct users per source and in all within a sliding window,
decided in one step, so no stream of small jobs slips under it."""

from __future__ import annotations

import fakeredis
import pytest

from worker.jobs.brake import (
    MAX_GROUP_MEMBERS_COUNTED,
    OPERATOR_SOURCE,
    Brake,
    BrakeLimits,
    Candidate,
    members_of,
    source_of,
)
from worker.jobs.model import Target, TargetType

NOW = 1_000_000_000


def _brake(per_source: int = 3, total: int = 0, window: int = 600, **overrides: int) -> Brake:
    limits = BrakeLimits(per_source=per_source, total=total, window_seconds=window, overrides=overrides)
    return Brake(fakeredis.FakeRedis(), key_prefix="t:", limits=limits)


def _held(brake: Brake, job_id: str, source: str) -> None:
    brake.redis.hset(brake.held_key, job_id, source)


def _users(source: str, *ids: int, exempt: bool = False) -> list[Candidate]:
    return [Candidate(ref=f"j-{source}-{i}:0", source=source, members=(f"u:{i}",), exempt=exempt) for i in ids]


def test_users_up_to_the_limit_go_and_the_next_is_held_naming_the_source_and_count() -> None:
    brake = _brake(per_source=3)
    held = brake.admit(_users("okta:soc", 1, 2, 3, 4, 5), now_ms=NOW)
    assert sorted(held) == ["j-okta:soc-4:0", "j-okta:soc-5:0"]
    hold = held["j-okta:soc-4:0"]
    assert (hold.source, hold.scope, hold.count, hold.limit) == ("okta:soc", "source", 3, 3)
    assert brake.announce(hold) and not brake.announce(held["j-okta:soc-5:0"])  # one engagement, told once
    assert "brake" in hold.reason() and "okta:soc" in hold.reason() and "3 users" in hold.reason()


def test_the_same_user_counted_again_is_not_a_new_user_so_deciding_twice_never_holds_more() -> None:
    brake = _brake(per_source=2)
    assert brake.admit(_users("s", 1, 2), now_ms=NOW) == {}
    assert brake.admit(_users("s", 1, 2), now_ms=NOW + 1) == {}  # a commit that lost a race decides again
    assert list(brake.admit(_users("s", 3), now_ms=NOW + 2)) == ["j-s-3:0"]


def test_once_engaged_every_later_target_of_the_source_waits_even_after_old_users_leave_the_window() -> None:
    brake = _brake(per_source=2, window=60)
    brake.admit(_users("s", 1, 2, 3), now_ms=NOW)
    # 59 s later the first users are still counted, and the engagement holds a new user of the source.
    assert list(brake.admit(_users("s", 4), now_ms=NOW + 59_000)) == ["j-s-4:0"]
    assert brake.sources(now_ms=NOW + 59_000)[0].engaged


def test_users_leave_the_window_after_it_passes() -> None:
    brake = _brake(per_source=2, window=60)
    assert brake.admit(_users("s", 1, 2), now_ms=NOW) == {}
    assert brake.admit(_users("s", 3, 4), now_ms=NOW + 61_000) == {}
    assert brake.sources(now_ms=NOW + 61_000)[0].users == 2


def test_sources_are_counted_apart_and_the_total_counts_them_together() -> None:
    brake = _brake(per_source=3, total=4)
    assert brake.admit(_users("a", 1, 2, 3), now_ms=NOW) == {}
    held = brake.admit(_users("b", 4, 5), now_ms=NOW)
    assert list(held) == ["j-b-5:0"] and held["j-b-5:0"].scope == "total" and held["j-b-5:0"].limit == 4
    # A user already counted for all sources adds nothing to the total.
    assert brake.admit(_users("c", 1), now_ms=NOW) == {}


def test_an_exempt_candidate_counts_but_is_never_held() -> None:
    brake = _brake(per_source=1)
    assert brake.admit(_users("s", 1, 2, 3, exempt=True), now_ms=NOW) == {}
    assert brake.sources(now_ms=NOW)[0].users == 3
    assert list(brake.admit(_users("s", 4), now_ms=NOW)) == ["j-s-4:0"]


def test_operators_count_in_their_own_source_and_not_toward_the_total() -> None:
    brake = _brake(per_source=0, total=2)
    operator = [Candidate(ref=f"j-op:{i}", source=OPERATOR_SOURCE, members=(f"u:{i}",), exempt=True)
                for i in range(100)]
    assert brake.admit(operator, now_ms=NOW) == {}
    assert brake.admit(_users("okta", 200, 201), now_ms=NOW) == {}
    assert list(brake.admit(_users("okta", 202), now_ms=NOW)) == ["j-okta-202:0"]


def test_a_release_lets_the_source_go_for_the_rest_of_the_window_and_disengages_it() -> None:
    brake = _brake(per_source=1, window=60)
    brake.admit(_users("s", 1, 2), now_ms=NOW)
    brake.release("s")
    assert brake.admit(_users("s", 3, 4, 5), now_ms=NOW) == {}
    other = brake.admit(_users("t", 6, 7), now_ms=NOW)
    assert list(other) == ["j-t-7:0"]  # another source is not released with it
    state = {s.source: s for s in brake.sources(now_ms=NOW)}["s"]
    assert not state.engaged and 0 < state.released_for_seconds <= 60


def test_releasing_every_source_lets_all_go() -> None:
    brake = _brake(per_source=1, total=1)
    brake.admit(_users("s", 1, 2), now_ms=NOW)
    brake.release("*")
    assert brake.admit(_users("s", 3) + _users("t", 4), now_ms=NOW) == {}


def test_a_limit_of_zero_is_off_and_an_override_by_route_or_whole_source_wins() -> None:
    assert _brake(per_source=0, total=0).admit(_users("s", *range(500)), now_ms=NOW) == {}
    brake = _brake(per_source=1, okta=3, **{"ssf:https://idp.example.com": 2})
    assert brake.limits.limit_for("okta:token#2") == 3
    assert brake.limits.limit_for("ssf:https://idp.example.com") == 2
    assert brake.limits.limit_for("splunk:token#1") == 1
    assert brake.admit(_users("okta:token#2", 1, 2, 3), now_ms=NOW) == {}


def test_an_override_of_zero_turns_one_source_off() -> None:
    brake = _brake(per_source=1, okta=0)
    assert brake.admit(_users("okta:x", 1, 2, 3), now_ms=NOW) == {}
    assert list(brake.admit(_users("splunk:y", 4, 5), now_ms=NOW)) == ["j-splunk:y-5:0"]


def test_a_group_counts_as_its_members() -> None:
    group = Target(input={"type": "group", "id": "55"}, type=TargetType.GROUP, group_id="55", member_count=4)
    assert len(members_of(group)) == 4
    assert len(members_of(Target(input={}, type=TargetType.GROUP, group_id="9", member_count=10**9))) == \
        MAX_GROUP_MEMBERS_COUNTED
    brake = _brake(per_source=3)
    held = brake.admit([Candidate(ref="j-g:0", source="s", members=members_of(group))], now_ms=NOW)
    assert list(held) == ["j-g:0"]


@pytest.mark.parametrize(("job_source", "requested_by", "expected"), [
    ("offboarding", "cli:root", OPERATOR_SOURCE),
    ("cli", "cli:alice", OPERATOR_SOURCE),
    ("ssf", "ssf:https://idp.example.com", "ssf:https://idp.example.com"),
    ("splunk", "splunk:token#1", "splunk:token#1"),
    ("box-shield", "box-event-stream", "box-event-stream"),
])
def test_a_jobs_source_is_who_sent_it_and_operators_are_one_source(job_source: str, requested_by: str,
                                                                    expected: str) -> None:
    assert source_of(job_source=job_source, requested_by=requested_by) == expected


def test_a_user_leaves_the_window_exactly_when_it_has_passed() -> None:
    brake = _brake(per_source=2, window=60)
    assert brake.admit(_users("s", 1, 2), now_ms=NOW) == {}
    assert list(brake.admit(_users("s", 3), now_ms=NOW + 59_999)) == ["j-s-3:0"]
    fresh = _brake(per_source=2, window=60)
    assert fresh.admit(_users("s", 1, 2), now_ms=NOW) == {}
    assert fresh.admit(_users("s", 3), now_ms=NOW + 60_000) == {}


def test_a_brake_turned_off_while_engaged_holds_nobody() -> None:
    brake = _brake(per_source=1)
    brake.admit(_users("s", 1, 2), now_ms=NOW)
    off = Brake(brake.redis, key_prefix="t:", limits=BrakeLimits(per_source=0, total=0, window_seconds=600))
    assert off.admit(_users("s", 3, 4), now_ms=NOW) == {}


def test_a_hold_names_the_limit_of_its_own_source() -> None:
    brake = _brake(per_source=5, a=1, b=3)
    held = brake.admit(_users("a", 1, 2) + _users("b", 3, 4, 5, 6), now_ms=NOW)
    assert {ref: (h.source, h.limit, h.count) for ref, h in held.items()} == {
        "j-a-2:0": ("a", 1, 1), "j-b-6:0": ("b", 3, 3)}
    assert held["j-b-6:0"].to_dict() == {"source": "b", "scope": "source", "count": 3, "limit": 3,
                                         "window_seconds": 600}


def test_an_override_by_route_holds_for_a_source_whose_name_has_colons() -> None:
    brake = _brake(per_source=1, ssf=3)
    assert brake.limits.limit_for("ssf:https://idp.example.com:8443/tenant") == 3


def test_the_limits_come_from_the_settings() -> None:
    from config import load_settings

    limits = BrakeLimits.from_settings(load_settings(
        {"BOXCUT_BRAKE_USERS": "7", "BOXCUT_BRAKE_TOTAL_USERS": "70", "BOXCUT_BRAKE_WINDOW_SECONDS": "120",
         "BOXCUT_BRAKE_SOURCE_USERS": "okta=9"}, env_file=None))
    assert limits == BrakeLimits(per_source=7, total=70, window_seconds=120, overrides={"okta": 9})


@pytest.mark.parametrize(("member_count", "counted"), [(None, 1), (0, 1), (1, 1), (2, 2)])
def test_a_group_of_unknown_or_one_member_counts_as_one_user(member_count: int | None, counted: int) -> None:
    group = Target(input={}, type=TargetType.GROUP, group_id="9", member_count=member_count)
    assert len(members_of(group)) == counted


def test_forgetting_a_held_job_takes_it_off_the_held_list() -> None:
    brake = _brake()
    _held(brake, "j-1", "s")
    _held(brake, "j-2", "t")
    brake.forget(["j-1"])
    assert brake.held_jobs() == {"j-2": "t"} and brake.held_jobs("t") == {"j-2": "t"}
    assert brake.held_jobs("s") == {}


def test_releasing_one_source_leaves_another_engaged() -> None:
    brake = _brake(per_source=1)
    brake.admit(_users("s", 1, 2) + _users("t", 3, 4), now_ms=NOW)
    brake.release("s")
    states = {s.source: s for s in brake.sources(now_ms=NOW)}
    assert not states["s"].engaged and states["t"].engaged and states["t"].released_for_seconds == 0


def test_releasing_every_source_touches_nothing_but_the_brakes_engagements() -> None:
    brake = _brake(per_source=1)
    brake.redis.set("other-app:key", "kept")
    brake.redis.set("t:job:j-1", "kept")
    brake.admit(_users("s", 1, 2), now_ms=NOW)
    brake.release("*")
    assert brake.redis.get("other-app:key") == b"kept" and brake.redis.get("t:job:j-1") == b"kept"
    assert brake.sources(now_ms=NOW)[0].users == 1  # the count stays: a release lifts the hold, not the history


def test_the_listing_shows_the_busiest_source_first_with_its_own_held_jobs() -> None:
    brake = _brake(per_source=2, window=60)
    brake.admit(_users("quiet", 1) + _users("busy", 2, 3, 4), now_ms=NOW)
    _held(brake, "j-busy", "busy")
    states = brake.sources(now_ms=NOW + 1000)
    assert [(s.source, s.users, s.engaged, s.held_jobs) for s in states] == [
        ("busy", 2, True, ["j-busy"]), ("quiet", 1, False, [])]
    assert brake.totals(now_ms=NOW).to_dict()["source"] == "*"


def test_deployments_with_their_own_key_prefix_count_apart_on_one_redis() -> None:
    from config import load_settings

    client = fakeredis.FakeRedis()
    first = Brake.from_settings(client, load_settings({"BOXCUT_BRAKE_USERS": "1", "BOXCUT_KEY_PREFIX": "a:"},
                                                      env_file=None))
    second = Brake.from_settings(client, load_settings({"BOXCUT_BRAKE_USERS": "1", "BOXCUT_KEY_PREFIX": "b:"},
                                                       env_file=None))
    assert first.limits.per_source == 1 and first.admit(_users("s", 1), now_ms=NOW) == {}
    assert second.admit(_users("s", 2), now_ms=NOW) == {}
    assert all(key.startswith((b"a:brake:", b"b:brake:")) for key in client.keys("*"))


def test_the_total_counts_every_source_within_the_window_and_the_held_jobs_of_a_source() -> None:
    from worker.jobs.brake import jobs_held

    brake = _brake(per_source=10, window=60)
    brake.admit(_users("a", 1, 2) + _users("b", 3, 4), now_ms=NOW)
    brake.admit(_users("c", 5), now_ms=NOW - 61_000)  # counted long ago: no longer in the window
    assert brake.totals(now_ms=NOW).users == 4
    _held(brake, "j-1", "a")
    _held(brake, "j-2", "a")
    _held(brake, "j-3", "b")
    assert jobs_held(brake.redis, key_prefix="t:", source="a") == 2


def test_the_window_runs_on_redis_clock_so_a_worker_whose_clock_runs_ahead_ages_nothing_out() -> None:
    brake = _brake(per_source=2, window=600)
    assert brake.admit(_users("s", 1, 2)) == {}  # at Redis's time
    seconds, _ = brake.redis.time()
    entries = brake.redis.zrange("t:brake:src:s", 0, -1, withscores=True)
    assert all(abs(score / 1000 - int(seconds)) < 5 for _, score in entries)
    assert list(brake.admit(_users("s", 3))) == ["j-s-3:0"]  # a second worker, whatever its own clock says
    assert [(s.source, s.users) for s in brake.sources()] == [("s", 2)] and brake.totals().users == 2


def test_an_engagement_is_told_once_and_a_new_engagement_after_a_release_is_told_again() -> None:
    brake = _brake(per_source=1)
    [first] = brake.admit(_users("s", 1, 2), now_ms=NOW).values()
    assert brake.announce(first) and not brake.announce(first)
    brake.release("s")
    assert not brake.announce(first)  # released: nothing engaged to tell
    brake.redis.delete("t:brake:released:s")
    [again] = brake.admit(_users("s", 3), now_ms=NOW + 1).values()
    assert brake.announce(again)


def test_an_override_of_zero_takes_the_source_out_of_the_total_too() -> None:
    brake = _brake(per_source=5, total=3, okta=0)
    assert brake.admit(_users("okta:x", *range(10, 20)), now_ms=NOW) == {}
    assert brake.admit(_users("splunk:y", 1, 2, 3), now_ms=NOW) == {}
    assert list(brake.admit(_users("splunk:y", 4), now_ms=NOW)) == ["j-splunk:y-4:0"]


def test_a_large_group_counts_as_one_more_than_the_largest_limit() -> None:
    brake = _brake(per_source=3, total=7, okta=5)
    group = Target(input={}, type=TargetType.GROUP, group_id="9", member_count=50_000)
    assert brake.limits.group_cap == 8 and len(brake.candidate("j-g:0", group, source="s", exempt=True).members) == 8


def test_a_source_is_known_once_counted_engaged_released_or_holding() -> None:
    brake = _brake(per_source=1)
    assert not brake.knows("s") and brake.knows("*")
    brake.admit(_users("s", 1), now_ms=NOW)
    assert brake.knows("s")
    _held(brake, "j-1", "t")
    assert brake.knows("t")
