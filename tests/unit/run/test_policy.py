"""The safety policy on its own: protection, the admin rule, the blast radius, and its settings."""

from __future__ import annotations

from config import Settings
from worker.box.answers import BoxUser
from worker.jobs.model import Target, TargetStatus
from worker.run.policy import Policy, blast_radius

POLICY = Policy(protected_users=frozenset({"keep@example.com", "123"}), protected_groups=frozenset({"board", "77"}),
                approval_threshold=25, allowed_admins=frozenset({"ok-admin@example.com", "900"}))


def user(login: str | None = None, user_id: str | None = None, *, role: str | None = "user",
         status: TargetStatus = TargetStatus.PENDING, spec: dict[str, str] | None = None) -> Target:
    target = Target.from_input(spec or {"type": "user", **({"login": login} if login else {"id": user_id or ""})})
    target.login, target.user_id, target.role, target.status = login, user_id, role, status
    return target


def group(name: str | None, group_id: str | None, members: int | None, *,
          status: TargetStatus = TargetStatus.PENDING) -> Target:
    target = Target.from_input({"type": "group", **({"name": name} if name else {"id": group_id or ""})})
    target.group_name, target.group_id, target.member_count, target.status = name, group_id, members, status
    return target


def test_settings_become_the_policy() -> None:
    policy = Policy.from_settings(Settings(protected_users=(" Keep@Example.com ",), protected_groups=("Board",),
                                           dry_run=True, approval_threshold=5, allowed_admins=("Boss@Example.com",)))
    assert policy == Policy(protected_users=frozenset({"keep@example.com"}), protected_groups=frozenset({"board"}),
                            dry_run=True, approval_threshold=5, allowed_admins=frozenset({"boss@example.com"}))


def test_protection_by_what_was_asked_before_anything_is_resolved() -> None:
    assert POLICY.protection(Target.from_input({"type": "user", "login": "KEEP@example.com"})) is not None
    assert POLICY.protection(Target.from_input({"type": "user", "id": "123"})) is not None
    assert POLICY.protection(Target.from_input({"type": "group", "name": "Board"})) is not None
    assert POLICY.protection(Target.from_input({"type": "group", "id": "77"})) is not None
    assert POLICY.protection(Target.from_input({"type": "user", "id": "124"})) is None
    assert POLICY.protection(Target.from_input({"type": "group", "name": "Boardroom"})) is None


def test_protection_by_what_box_resolved_and_the_service_account() -> None:
    resolved = user("other@example.com", "123")
    assert POLICY.protection(resolved) == "123 is listed in BOXCUT_PROTECTED_USERS"
    assert POLICY.protection(user("a@example.com", "9"), service_account_id="9") == (
        "this is the service account boxcut itself runs as")
    assert POLICY.protection(user("a@example.com", "9"), service_account_id="8") is None
    assert POLICY.protection(user("a@example.com", "9"), service_account_id=None) is None


def test_every_unlisted_admin_needs_approval_even_after_targets_that_do_not_count() -> None:
    targets = [user("gone@example.com", status=TargetStatus.NOT_FOUND), user("boss@example.com", "1", role="admin"),
               user("co@example.com", "2", role="coadmin"), user("who@example.com", "3", role=None)]
    reasons = POLICY.approval_reasons(targets, blast_radius=3)
    assert [r.split(" is a Box ")[0] for r in reasons] == ["boss@example.com", "co@example.com", "who@example.com"]


def test_an_admin_allowed_by_login_or_by_id_needs_no_approval() -> None:
    by_login, by_id = user("OK-Admin@example.com", "5", role="admin"), user("x@example.com", "900", role="admin")
    assert POLICY.approval_reasons([by_login, by_id], blast_radius=2) == []
    assert not POLICY.needs_approval_as_admin(BoxUser(id="5", login="ok-admin@example.com", role="admin"))
    assert not POLICY.needs_approval_as_admin(BoxUser(id="900", login="x@example.com", role="admin"))
    assert POLICY.needs_approval_as_admin(BoxUser(id="6", login="x@example.com", role="admin"))
    assert not POLICY.needs_approval_as_admin(BoxUser(id="6", login="x@example.com", role="user"))


def test_the_blast_radius_threshold_is_exclusive() -> None:
    assert POLICY.approval_reasons([], blast_radius=25) == []
    assert POLICY.approval_reasons([], blast_radius=26)[0].startswith("26 users")


def test_a_group_is_protected_by_the_service_account_only_when_it_holds_it() -> None:
    members = [BoxUser(id="1", login="a@example.com"), BoxUser(id="2", login="b@example.com")]
    assert POLICY.member_protection(members, service_account_id="3") is None
    assert POLICY.member_protection(members, service_account_id=None) is None
    assert POLICY.member_protection(members, service_account_id="2") is not None
    assert POLICY.member_protection([BoxUser(id="123", login="z@example.com")], service_account_id=None) is not None


def test_the_blast_radius_counts_pending_resolved_users_once_and_every_member_of_pending_groups() -> None:
    targets = [
        user("gone@example.com", status=TargetStatus.NOT_FOUND),
        user("a@example.com", "1"), user("b@example.com", "2"), user("a-again@example.com", "1"),
        user("kept@example.com", "3", status=TargetStatus.PROTECTED),
        group("Sales", "55", 3), group("Ops", "56", 4), group("Empty", "57", None),
        group("Board", "58", 10, status=TargetStatus.PROTECTED),
        user("unresolved@example.com", None),
    ]
    assert blast_radius(targets) == 2 + 3 + 4
