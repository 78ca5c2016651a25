"""Reconciliation at scale, against the Calendly sandbox over real sockets, on SQLite and on
Table Storage (Azurite): one list per scope in use, an exact diff (missing, disabled, orphan,
healthy, interrupted subscribes and unsubscribes; hooks spread over several pages and scopes),
repair calls bounded by the run's share of Calendly's rate limit, and a rate-limited Calendly
mid-run losing nothing (the next run finishes the work). Calendly calls are counted with the
sandbox's request log; time is a FakeClock and waits are recorded, never slept."""
from __future__ import annotations

import json
import math
import uuid
from collections import Counter

import pytest
import requests

from shared.calendly import CalendlyClient
from shared.composition import compose
from shared.secrets import EnvironmentPat
from shared.models import HttpEndpoint, Subscription, SubscriptionState, isotime, new_callback_token
from shared.settings import Settings
from shared.lifecycle import new_signing_key
from tests.conftest import clean_env
from tests.peers import FakeClock

PUBLIC_URL = "http://127.0.0.1:9"  # Calendly is never asked to call it here
GROUP = "https://api.calendly.com/groups/G-reconcile"


class Monotonic:
    """A monotonic clock that moves only when told to (the client measures rate windows with it)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Waits:
    """The reconciler's ``sleep``: records each wait, moves the clock, and lets the sandbox's rate
    window pass as Calendly's would."""

    def __init__(self, sandbox, monotonic: Monotonic):
        self.sandbox = sandbox
        self.monotonic = monotonic
        self.seconds: list[float] = []
        self.calls_at: list[int] = []  # Calendly calls made before each wait

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.calls_at.append(len(self.sandbox.app.requests_log()))
        self.pass_time(seconds)

    def pass_time(self, seconds: float) -> None:
        self.monotonic.now += seconds
        self.sandbox.app.set_rate_limit()  # a fresh window, same limit


@pytest.fixture(params=["sqlite", pytest.param("tables", marks=pytest.mark.azurite)])
def reconcile_bridge(request, tmp_path, sandbox):
    made = []

    def make(**overrides):
        env = {"CALENDLY_API_BASE": sandbox.url, "CALENDLY_PAT": "test-pat", "BRIDGE_PUBLIC_URL": PUBLIC_URL,
               "ALLOW_INSECURE_TARGETS": "true", "BRIDGE_SQLITE_PATH": str(tmp_path / "reconcile.sqlite3")}
        if request.param == "tables":
            env |= {"AzureWebJobsStorage": request.getfixturevalue("azurite"),
                    "BRIDGE_TABLE_PREFIX": f"r{uuid.uuid4().hex[:12]}"}
        env |= overrides
        clock, monotonic = FakeClock(), Monotonic()
        client = CalendlyClient(sandbox.url, EnvironmentPat("test-pat"), monotonic=monotonic)
        waits = Waits(sandbox, monotonic)
        bridge = compose(Settings.from_env(env), calendly=client, clock=clock, sleep=waits)
        assert bridge.store.name == request.param
        bridge.clock = clock
        bridge.waits = waits
        made.append(bridge)
        return bridge

    yield make
    for bridge in made:
        bridge.close()


# Seeding: records straight into the store, hooks straight into the sandbox (no API calls) -----
def seed(bridge, sandbox, n, *, scope="organization", start=0, state=SubscriptionState.ACTIVE, hook="active",
         updated_at=None) -> list[Subscription]:
    app = sandbox.app
    user = app.user_uri if scope == "user" else None
    group = GROUP if scope == "group" else None
    subs = []
    for i in range(start, start + n):
        sub = Subscription(id=f"{scope[:3]}{i:029d}", target=HttpEndpoint(f"https://flow.example/{scope}/{i}"),
                           events=["invitee.created"], scope=scope, organization=app.organization_uri, user=user,
                           group=group, signing_key=new_signing_key(), generation="g", state=state,
                           callback_token=new_callback_token(), updated_at=updated_at or isotime(bridge.clock()))
        if hook is not None:
            made = app.add_hook(bridge.subscriptions.callback_url(sub), sub.events, scope=scope, user=user, group=group,
                                signing_key=sub.signing_key, state=hook)
            sub = sub.replace(calendly_webhook=made["uri"])
        subs.append(bridge.store.create_subscription(sub))
    return subs


def hook_id(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


def calls(sandbox, since: int = 0) -> Counter:
    """Calendly calls since the last reset (and the first ``since`` of them), by kind."""
    kinds = Counter()
    for r in sandbox.app.requests_log()[since:]:
        if r["path"] == "/webhook_subscriptions":
            kinds[f"{r['method']} list" if r["method"] == "GET" else "POST create"] += 1
        elif r["path"].startswith("/webhook_subscriptions/"):
            kinds[f"{r['method']} one"] += 1
        else:
            kinds[f"{r['method']} {r['path']}"] += 1
    return kinds


def deleted_hooks(sandbox) -> list[str]:
    return sorted(r["path"].rsplit("/", 1)[1] for r in sandbox.app.requests_log() if r["method"] == "DELETE")


def assert_consistent(bridge, sandbox, foreign=()):
    """Every live record has exactly one active hook at its URL, signing with the record's key;
    no other hook calls the bridge; hooks of others are untouched."""
    hooks = {h["uri"]: h for h in sandbox.app.hooks()}
    ours = [h for h in hooks.values() if h["callback_url"].startswith(f"{PUBLIC_URL}/api/calendly/events/")]
    subs = bridge.reconciler._all_subscriptions()
    live = [s for s in subs if s.state in (SubscriptionState.ACTIVE, SubscriptionState.CREATING)]
    for sub in live:
        url = bridge.subscriptions.callback_url(sub)
        assert sub.state == SubscriptionState.ACTIVE, sub.id
        assert hooks[sub.calendly_webhook]["state"] == "active" and hooks[sub.calendly_webhook]["callback_url"] == url
        assert sandbox.app.signing_key(url) == sub.signing_key, f"{sub.id}: the hook signs with another key"
    assert sorted(h["uri"] for h in ours) == sorted(s.calendly_webhook for s in live)
    assert all(not s.calendly_webhook for s in subs if s.state == SubscriptionState.RETIRED)
    assert not [s for s in subs if s.state == SubscriptionState.DELETING]
    for uri in foreign:
        assert uri in hooks


# Cost -------------------------------------------------------------------------------------------
def test_healthy_subscriptions_cost_one_list_call_per_page_per_scope(reconcile_bridge, sandbox):
    bridge = reconcile_bridge()
    seed(bridge, sandbox, 300)                      # 3 pages of organization hooks
    seed(bridge, sandbox, 101, scope="user")        # 2 pages of the PAT owner's
    seed(bridge, sandbox, 5, scope="group")         # 1 page of a group's
    sandbox.app.reset(keep_hooks=True)
    summary = bridge.reconciler.reconcile()
    made = calls(sandbox)
    assert made == {"GET /users/me": 1, "GET list": 3 + 2 + 1}, made
    assert summary.calendly_calls == 7 and summary.list_pages == 6 and summary.scopes == 3
    assert (summary.checked, summary.healthy, summary.leftover, summary.errors) == (406, 406, 0, [])
    # The goal: 300 healthy organization-scope subscriptions in at most 8 calls.
    assert summary.calendly_calls <= math.ceil(300 / 100) + math.ceil(101 / 100) + 1 + 3
    # The next run knows the PAT's owner already: list pages only.
    sandbox.app.reset(keep_hooks=True)
    bridge.reconciler.reconcile()
    assert calls(sandbox) == {"GET list": 6}


# The diff ------------------------------------------------------------------------------------------
def test_the_diff_is_exact_over_pages_and_scopes(reconcile_bridge, sandbox):
    bridge = reconcile_bridge()
    app = sandbox.app
    org = seed(bridge, sandbox, 250)
    user = seed(bridge, sandbox, 130, scope="user")
    group = seed(bridge, sandbox, 20, scope="group")
    # Disabled and missing hooks on the first, middle and last pages of each scope.
    disabled = [org[3], org[140], org[249], user[120], group[7]]
    missing = [org[60], org[230], user[2], group[19]]
    for sub in disabled:
        app.set_state(hook_id(sub.calendly_webhook), "disabled")
    for sub in missing:
        app.remove(hook_id(sub.calendly_webhook))
    # Orphans: hooks calling the bridge without a record, in each scope (past the first page too).
    orphans = [app.add_hook(f"{PUBLIC_URL}/api/calendly/events/{'e' * 31}{i}", ["invitee.created"], scope=scope,
                            group=GROUP if scope == "group" else None)["uri"]
               for i, scope in enumerate(["organization", "organization", "user", "group"])]
    foreign = [app.add_hook("https://someone-else.example/hook", ["invitee.created"])["uri"],
               app.add_hook(f"{PUBLIC_URL}/elsewhere/1", ["invitee.created"], scope="user")["uri"]]
    # Interrupted subscribes and unsubscribes.
    long_ago = isotime(bridge.clock(), -3600)
    crashed_before_hook = seed(bridge, sandbox, 1, start=900, state=SubscriptionState.CREATING, hook=None,
                               updated_at=long_ago)[0]
    crashed_after_hook = seed(bridge, sandbox, 1, start=901, state=SubscriptionState.CREATING, updated_at=long_ago)[0]
    crashed_hook = crashed_after_hook.calendly_webhook  # same URL, a key the record may no longer hold
    crashed_after_hook = bridge.store.update_subscription(crashed_after_hook.replace(calendly_webhook=None))
    in_flight = seed(bridge, sandbox, 1, start=902, state=SubscriptionState.CREATING)[0]  # within the grace
    in_flight = bridge.store.update_subscription(in_flight.replace(calendly_webhook=None))
    deleting = seed(bridge, sandbox, 2, start=910, state=SubscriptionState.DELETING)
    app.remove(hook_id(deleting[1].calendly_webhook))  # this one's hook is already gone
    retired = seed(bridge, sandbox, 2, start=920, state=SubscriptionState.RETIRED, scope="user")
    app.remove(hook_id(retired[1].calendly_webhook))
    in_flight_uri = next(h["uri"] for h in app.hooks() if h["callback_url"] == bridge.subscriptions.callback_url(in_flight))
    app.reset(keep_hooks=True)

    summary = bridge.reconciler.reconcile()

    assert summary.errors == [] and summary.leftover == 0, summary
    assert (summary.recreated, summary.completed, summary.deleted, summary.orphans_deleted) == \
        (len(disabled) + len(missing), 2, 4, len(orphans)), summary
    assert summary.checked == 250 + 130 + 20 + 3 + 2 + 2
    assert summary.healthy == 250 + 130 + 20 - len(disabled) - len(missing)
    # Exactly the calls the differences need: no per-subscription GET, no needless DELETE.
    made = calls(sandbox)
    assert made["GET one"] == 0
    assert made["GET list"] == 3 + 2 + 1 and made["GET /users/me"] == 1
    assert made["POST create"] == len(disabled) + len(missing) + 2
    expected_deletes = ([hook_id(s.calendly_webhook) for s in disabled + [deleting[0], retired[0]]]
                        + [hook_id(u) for u in orphans] + [hook_id(crashed_hook)])
    assert sorted(expected_deletes) == deleted_hooks(sandbox)
    assert summary.calendly_calls == sum(made.values())
    # The outcome: records and hooks agree, the in-flight subscribe's hook and others' hooks are untouched.
    assert in_flight_uri in {h["uri"] for h in app.hooks()}
    for sub in (deleting[0], deleting[1]):
        assert bridge.store.get_subscription(sub.id) is None
    bridge.store.update_subscription(bridge.store.get_subscription(in_flight.id).replace(
        state=SubscriptionState.ACTIVE, calendly_webhook=in_flight_uri))  # the subscribe finishes
    assert_consistent(bridge, sandbox, foreign)
    for sub in disabled + missing:
        assert bridge.store.get_subscription(sub.id).signing_key != sub.signing_key, "recreated with a new key"

    # A second run finds nothing to do: list pages only.
    app.reset(keep_hooks=True)
    again = bridge.reconciler.reconcile()
    assert calls(sandbox) == {"GET list": 6}, calls(sandbox)
    assert (again.checked, again.healthy, again.leftover) == (405, 403, 0), again


def test_a_hook_calling_an_outdated_url_is_moved_without_a_gap(reconcile_bridge, sandbox, monkeypatch):
    """When the callback URL a record's hook must have changes (e.g. to a random token), the hook
    moves: the new one (same key) exists before the old one is deleted."""
    bridge = reconcile_bridge()
    [sub] = seed(bridge, sandbox, 1)
    old_url = bridge.subscriptions.callback_url(sub)
    monkeypatch.setattr(bridge.subscriptions.urls, "of", lambda sub: f"{PUBLIC_URL}/api/calendly/events/t-{sub.id}")
    sandbox.app.reset(keep_hooks=True)
    summary = bridge.reconciler.reconcile()
    assert (summary.recreated, summary.orphans_deleted) == (1, 0)
    assert [r["method"] for r in sandbox.app.requests_log() if r["path"].startswith("/webhook_subscriptions/") or r["method"] == "POST"] == ["POST", "DELETE"]
    current = bridge.store.get_subscription(sub.id)
    assert current.signing_key == sub.signing_key and current.calendly_webhook != sub.calendly_webhook
    assert sandbox.app.signing_key(old_url) is None
    assert_consistent(bridge, sandbox)


def test_a_member_pat_refused_organization_hooks_is_reported_and_the_rest_reconciled(reconcile_bridge, sandbox):
    bridge = reconcile_bridge()
    org = seed(bridge, sandbox, 3)
    user = seed(bridge, sandbox, 3, scope="user")
    for sub in (org[0], user[0]):
        sandbox.app.set_state(hook_id(sub.calendly_webhook), "disabled")
    sandbox.app.reset(keep_hooks=True)
    sandbox.app.add_fault(method="GET", path_prefix="/webhook_subscriptions", status=403)  # organization is listed first
    summary = bridge.reconciler.reconcile()
    assert [e.code for e in summary.errors] == ["calendly_forbidden"]
    assert "listing organization hooks" in summary.errors[0].message
    assert (summary.recreated, summary.checked, summary.leftover) == (1, 3, 0)
    assert bridge.store.get_subscription(org[0].id).calendly_webhook == org[0].calendly_webhook  # left alone


def test_a_subscribe_landing_while_hooks_are_listed_is_not_taken_for_an_orphan(reconcile_bridge, sandbox):
    bridge = reconcile_bridge()
    seed(bridge, sandbox, 2)
    store = bridge.store
    real_list = store.list_subscriptions
    late: list[Subscription] = []

    def list_then_subscribe(limit, cursor=None):
        page = real_list(limit, cursor)
        if not late:  # right after the first read, before Calendly is listed: a subscribe lands
            late.extend(seed(bridge, sandbox, 1, start=50))
        return page

    store.list_subscriptions = list_then_subscribe
    sandbox.app.reset(keep_hooks=True)
    summary = bridge.reconciler.reconcile()
    assert summary.orphans_deleted == 0 and deleted_hooks(sandbox) == []
    assert late[0].calendly_webhook in {h["uri"] for h in sandbox.app.hooks()}


# The budget and Calendly's rate limit ---------------------------------------------------------------
def test_repair_calls_are_bounded_per_run_paced_per_window_and_finished_by_later_runs(reconcile_bridge, sandbox):
    bridge = reconcile_bridge(RECONCILE_RATE_SHARE_PERCENT="10")
    subs = seed(bridge, sandbox, 30)
    for sub in subs:
        sandbox.app.set_state(hook_id(sub.calendly_webhook), "disabled")
    sandbox.app.reset(keep_hooks=True)
    sandbox.app.set_rate_limit(limit=100)  # 10% of it: 10 calls a window, 10 repair calls a run
    runs = []
    while not runs or runs[-1].leftover:
        runs.append(bridge.reconciler.reconcile())
        assert len(runs) <= 10, runs
    # 60 repair calls (delete the disabled hook, create a new one) at 10 a run: 6 runs.
    assert [r.recreated for r in runs] == [5] * 6, runs
    assert [r.leftover for r in runs] == [25, 20, 15, 10, 5, 0]
    assert runs[0].leftover_reason == "repair_budget" and runs[-1].leftover_reason == ""
    assert all(not r.errors for r in runs)
    # Paced: the run waited for Calendly's window instead of spending more than its share of it.
    log_sizes = [0, *bridge.waits.calls_at, len(sandbox.app.requests_log())]
    assert bridge.waits.seconds and all(0 < s <= 61 for s in bridge.waits.seconds)
    assert max(b - a for a, b in zip(log_sizes, log_sizes[1:])) <= 10, log_sizes
    assert_consistent(bridge, sandbox)


@pytest.mark.parametrize("where", ["GET", "POST", "DELETE"])
def test_calendly_rate_limiting_mid_run_loses_nothing_and_the_next_run_finishes(reconcile_bridge, sandbox, where):
    """Mid-run, Calendly answers 429 with an X-RateLimit-Reset far beyond what a run waits (someone
    else spent the PAT's window): the run stops, reports the leftover (not an error), and leaves
    every record in a state the next run finishes."""
    bridge = reconcile_bridge()
    subs = seed(bridge, sandbox, 250)
    broken = subs[10:250:20]  # 12 disabled hooks over three pages
    for sub in broken:
        sandbox.app.set_state(hook_id(sub.calendly_webhook), "disabled")
    deleting = seed(bridge, sandbox, 2, start=500, state=SubscriptionState.DELETING)
    orphan = sandbox.app.add_hook(f"{PUBLIC_URL}/api/calendly/events/{'f' * 32}", ["invitee.created"])["uri"]
    sandbox.app.reset(keep_hooks=True)
    # The second list page, the fourth create or the fourth delete is refused for an hour.
    sandbox.app.add_fault(method=where, path_prefix="/webhook_subscriptions", ratelimit_reset=3600,
                          skip={"GET": 1, "POST": 3, "DELETE": 3}[where])

    first = bridge.reconciler.reconcile()
    assert first.errors == [] and first.leftover > 0 and first.leftover_reason == "rate_limit", first
    assert bridge.waits.seconds == [], "a reset an hour away is not waited for inside a run"
    done_first = {"GET": 0, "POST": 3, "DELETE": 3}[where]  # the recreates that got through
    assert first.recreated == done_first and first.leftover == (252 if where == "GET" else 12 - done_first + 3)
    for sub in subs + deleting:  # nothing lost: each record is as it was, or repaired, or knows it has no hook
        current = bridge.store.get_subscription(sub.id)
        assert current is not None and current.state == sub.state

    bridge.waits.pass_time(3600)  # the hour is over; the next run
    second = bridge.reconciler.reconcile()
    assert second.errors == [] and second.leftover == 0, second
    assert first.recreated + second.recreated == len(broken)
    assert first.deleted + second.deleted == 2
    assert first.orphans_deleted + second.orphans_deleted == 1
    assert orphan not in {h["uri"] for h in sandbox.app.hooks()}
    assert_consistent(bridge, sandbox)


def test_a_short_x_ratelimit_reset_is_waited_for_within_the_run(reconcile_bridge, sandbox):
    bridge = reconcile_bridge(RECONCILE_RATE_SHARE_PERCENT="100")
    subs = seed(bridge, sandbox, 20)
    for sub in subs[:6]:
        sandbox.app.set_state(hook_id(sub.calendly_webhook), "disabled")
    sandbox.app.reset(keep_hooks=True)
    sandbox.app.add_fault(method="POST", path_prefix="/webhook_subscriptions", ratelimit_reset=30)
    summary = bridge.reconciler.reconcile()
    # The 429'd recreate is left (the record knows it has no hook); the others go on after the wait.
    assert bridge.waits.seconds and 29 <= bridge.waits.seconds[0] <= 31, bridge.waits.seconds
    assert (summary.recreated, summary.leftover, summary.errors) == (5, 1, [])
    assert bridge.reconciler.reconcile().recreated == 1
    assert_consistent(bridge, sandbox)


def test_reconcile_leaves_room_when_subscribes_used_the_window(reconcile_bridge, sandbox):
    """Makers' subscribes spent most of Calendly's window: the run waits for the next one rather
    than take what is left (and gives up past its allowance of waiting)."""
    bridge = reconcile_bridge()
    subs = seed(bridge, sandbox, 5)
    sandbox.app.set_state(hook_id(subs[0].calendly_webhook), "disabled")
    sandbox.app.reset(keep_hooks=True)
    sandbox.app.set_rate_limit(limit=500, window=3600)
    with requests.Session() as others:  # others' calls in this window: 50 left, under the 400 kept for them
        for _ in range(450):
            others.get(f"{sandbox.url}/users/me", headers={"Authorization": "Bearer test-pat"}, timeout=5)
    summary = bridge.reconciler.reconcile()
    # /users/me tells the bridge the window is spent; it lists nothing more and repairs nothing.
    assert calls(sandbox, since=450) == {"GET /users/me": 1}, calls(sandbox, since=450)
    assert (summary.leftover, summary.leftover_reason, summary.errors) == (5, "rate_limit", [])


# The command -----------------------------------------------------------------------------------------
def test_command_prints_leftover_and_logs_it(make_host, sandbox, target):
    from tests.helpers import subscribe

    bridge = make_host()
    made = [subscribe(bridge, target, path=f"/f{i}").json() for i in range(4)]
    for sub in made:
        sandbox.app.set_state(hook_id(sub["calendly_webhook"]), "disabled")
    sandbox.app.add_fault(method="POST", path_prefix="/webhook_subscriptions", ratelimit_reset=3600, skip=1)
    done = bridge.run("reconcile")
    summary = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr  # work left for the next run is not an error
    assert (summary["recreated"], summary["leftover"], summary["leftover_reason"], summary["errors"]) == \
        (1, 3, "rate_limit", []), summary
    line = next(line for line in done.stderr.splitlines() if "reconcile outcome=" in line)
    assert "reconcile outcome=ok " in line and " leftover=3 " in line and line.endswith(" errors=0"), line
    again = json.loads(bridge.run("reconcile").stdout)
    assert (again["recreated"], again["leftover"]) == (3, 0), again


def test_settings_declare_the_share():
    declared = Settings.declared()["RECONCILE_RATE_SHARE_PERCENT"]
    assert declared["default"] == 20
    with pytest.raises(Exception):
        Settings.from_env({**clean_env(), "RECONCILE_RATE_SHARE_PERCENT": "0"})


def test_client_keeps_calendlys_word_on_the_rate_window(sandbox):
    from shared.calendly import CalendlyClient
    from shared.secrets import EnvironmentPat

    sandbox.app.set_rate_limit(limit=50, window=3600)
    client = CalendlyClient(sandbox.url, EnvironmentPat("test-pat"))
    try:
        client.me()
        client.me()
        assert (client.rate.limit, client.rate.remaining) == (50, 48) and client.calls_in_this_thread == 2
    finally:
        client.close()


def test_the_benchmark_counts_the_calls_of_the_command(tmp_path):
    """benchmarks/reconcile.py (the README's rows) in its smallest size: it must keep measuring."""
    from benchmarks import reconcile as bench

    healthy = bench.case("sqlite", {"BRIDGE_SQLITE_PATH": str(tmp_path / "h.sqlite3")}, 100, 0.0)
    sick = bench.case("sqlite", {"BRIDGE_SQLITE_PATH": str(tmp_path / "s.sqlite3")}, 100, 0.01)
    assert (healthy["runs"], healthy["errors"]) == ([3], 0)
    assert (sick["disabled"], sick["runs"], sick["recreated"], sick["after"]) == (1, [5], 1, 3)


def test_a_record_changed_while_its_hook_is_recreated_leaves_no_hook_behind(reconcile_bridge, sandbox):
    bridge = reconcile_bridge()
    [sub] = seed(bridge, sandbox, 1)
    sandbox.app.set_state(hook_id(sub.calendly_webhook), "disabled")
    create_hook = bridge.reconciler.lifecycle.create_hook

    def create_then_unsubscribed(record):
        hook = create_hook(record)
        bridge.store.delete_subscription(record.id)  # an unsubscribe lands while Calendly answers
        return hook

    bridge.reconciler.lifecycle.create_hook = create_then_unsubscribed
    sandbox.app.reset(keep_hooks=True)
    summary = bridge.reconciler.reconcile()
    assert summary.recreated == 0 and summary.errors == []
    assert sandbox.app.hooks() == []
