"""The Functions surface as declared in function_app.py (what Azure will index)."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.errors import SettingsError

from tests.conftest import ROOT, declared_functions, functions_over

EXPECTED = {
    ("POST", "subscriptions"): "FUNCTION",
    ("POST", "triggers/{trigger}"): "FUNCTION",
    ("GET", "subscriptions"): "FUNCTION",
    ("DELETE", "subscriptions"): "FUNCTION",
    ("GET", "subscriptions/{id}"): "FUNCTION",
    ("DELETE", "subscriptions/{id}"): "FUNCTION",
    ("GET", "subscriptions/{id}/deliveries"): "FUNCTION",
    ("POST", "deliveries/{delivery_id}/replay"): "FUNCTION",
    ("POST", "subscriptions/{id}/test"): "FUNCTION",
    ("POST", "calendly/events/{id}"): "ANONYMOUS",
    ("GET", "health"): "ANONYMOUS",
}


def _http_routes():
    routes = {}
    for fn in declared_functions():
        trigger = fn.get_trigger()
        if getattr(trigger, "route", None) is None:
            continue
        for method in trigger.methods:
            routes[(str(getattr(method, "value", method)), trigger.route)] = str(getattr(trigger.auth_level, "name", trigger.auth_level))
    return routes


def test_every_contract_route_is_declared_with_its_auth_level():
    routes = _http_routes()
    for key, level in EXPECTED.items():
        assert routes.get(key) == level, f"{key} should be auth level {level}, is {routes.get(key)}"


def test_only_the_calendly_callback_health_and_the_console_page_are_anonymous():
    """The console's page, its two assets and its sign-in mode hold no data (tests/test_console.py); every
    data call it makes goes to a management route."""
    anonymous = {key for key, level in _http_routes().items() if level == "ANONYMOUS"}
    assert anonymous == {("POST", "calendly/events/{id}"), ("GET", "health"), ("GET", "console"),
                         ("GET", "console/assets/{file}"), ("GET", "console/config")}


def test_function_names_are_unique():
    names = [fn.get_function_name() for fn in declared_functions()]
    assert len(names) == len(set(names))


def test_route_prefix_is_api():
    import json

    assert json.loads((ROOT / "host.json").read_text())["extensions"]["http"]["routePrefix"] == "api"


def test_shared_package_never_imports_azure_functions():
    offenders = []
    for path in Path(ROOT / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "azure.functions" or n.startswith("azure.functions.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_function_app_handlers_stay_thin():
    tree = ast.parse((ROOT / "function_app.py").read_text("utf-8"))
    declared = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.decorator_list]
    assert len(declared) == len(declared_functions())  # every declared function is checked (they sit in build_app)
    for node in declared:
        assert len(node.body) <= 6, f"{node.name} does more than parse, call shared/ and shape the response"


def _function(name):
    [fn] = [fn for fn in declared_functions() if fn.get_function_name() == name]
    return fn


def _trigger(name):
    return _function(name).get_trigger()


def test_timer_and_queue_take_their_schedule_and_queue_from_app_settings_at_startup():
    """Binding expressions, resolved by the host when it starts (a bad value fails visibly there),
    not values read from os.environ at import and frozen into the indexed metadata."""
    assert _trigger("reconcile").schedule == "%RECONCILE_SCHEDULE%"
    assert _trigger("retry_delivery").queue_name == "%DELIVERY_QUEUE%"


def test_the_sample_settings_give_the_binding_expressions_the_defaults():
    import json

    from shared.settings import Settings

    values = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    declared = Settings.declared()
    assert values["RECONCILE_SCHEDULE"] == declared["RECONCILE_SCHEDULE"]["default"] == "0 */15 * * * *"
    assert values["DELIVERY_QUEUE"] == declared["DELIVERY_QUEUE"]["default"] == "calendly-deliveries"


def test_function_app_reads_no_environment():
    source = (ROOT / "function_app.py").read_text("utf-8")
    assert "os.environ" not in source and "getenv" not in source


def test_app_insights_sampling_never_drops_requests_exceptions_or_the_traces_alerts_read():
    import json

    sampling = json.loads((ROOT / "host.json").read_text())["logging"]["applicationInsights"]["samplingSettings"]
    assert {"Request", "Exception", "Trace"} <= set(sampling["excludedTypes"].split(";"))


def test_queue_retries_are_bounded_by_the_host_too():
    import json

    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["maxDequeueCount"] >= 5  # a store outage retries the message; then the poison queue keeps it


def test_under_the_functions_host_with_sqlite_the_timer_retries_every_due_delivery(tmp_path, target):
    """`func start` without Azure storage has no retry queue: the declared timer function is what
    retries, so a delivery that failed is sent by its next run once due (not only 10 minutes late)."""
    from shared import signatures
    from shared.composition import compose
    from shared.models import HttpEndpoint, Subscription, SubscriptionState
    from shared.settings import Settings
    from tests.peers import FakeClock

    clock = FakeClock()
    bridge = compose(Settings.from_env({"BRIDGE_SQLITE_PATH": str(tmp_path / "b.sqlite3"), "CALENDLY_PAT": "x",
                                        "CALENDLY_API_BASE": "http://127.0.0.1:9", "ALLOW_INSECURE_TARGETS": "true",
                                        "BRIDGE_PUBLIC_URL": "http://127.0.0.1:7071"}), clock=clock)
    sub = bridge.store.create_subscription(Subscription(
        id="e" * 32, target=HttpEndpoint(f"{target.url}/flow"), events=["invitee.created"], scope="organization",
        organization="o", user=None, group=None, signing_key="k", generation="g", state=SubscriptionState.ACTIVE))
    target.respond(default=503)
    body = b'{"event": "invitee.created", "payload": {"uri": "https://api.calendly.com/x/invitees/9"}}'
    assert bridge.callbacks.receive(sub.id, {signatures.HEADER: signatures.sign(body, "k")}, body).status == 202
    target.respond(default=200)
    failed_posts = len(target.received)
    try:
        timer = functions_over(bridge)["reconcile"].get_user_function()
        timer(None)
        assert len(target.received) == failed_posts, "not due yet"
        clock.advance(2 * bridge.deliveries.policy.backoff_base)
        timer(None)  # reconcile itself reports Calendly unreachable; the retry still happens
        assert len(target.delivered()) == 1
    finally:
        bridge.close()


def test_a_reconcile_run_waits_for_calendly_far_less_than_the_function_timeout():
    import json

    from shared.reconcile import MAX_RUN_WAIT_SECONDS

    hours, minutes, seconds = (int(x) for x in json.loads((ROOT / "host.json").read_text())["functionTimeout"].split(":"))
    assert MAX_RUN_WAIT_SECONDS <= (hours * 3600 + minutes * 60 + seconds) / 2


def test_entra_modes_declare_the_management_routes_anonymous_for_the_app_to_check_tokens():
    """MANAGEMENT_AUTH=entra|both: the host's key check would refuse a caller holding only a token, so the
    management routes are indexed anonymous and shared/auth.py checks every call; the rest is unchanged."""
    import json

    from tests.conftest import clean_env

    script = ("import json, function_app\n"
              "print(json.dumps({f'{m} {f.get_trigger().route}': str(f.get_trigger().auth_level.name)"
              " for f in function_app.app.get_functions() if getattr(f.get_trigger(), 'route', None)"
              " for m in f.get_trigger().methods}))")
    for mode, management in (("entra", "ANONYMOUS"), ("both", "ANONYMOUS"), ("function_key", "FUNCTION"), ("", "FUNCTION")):
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env={**clean_env(), "MANAGEMENT_AUTH": mode})
        assert done.returncode == 0, done.stderr
        levels = json.loads(done.stdout)
        for (method, route), level in EXPECTED.items():
            expected = level if level == "ANONYMOUS" else management
            assert levels[f"{method} {route}"] == expected, (mode, method, route)


def test_indexing_the_app_imports_neither_requests_nor_pydantic_nor_the_settings_model():
    """What the host does at a cold start (import function_app, index the functions) stays near a
    bare app: the heavy libraries load when the bridge is first composed (benchmarks/cold_start.py)."""

    code = ("import sys, function_app; function_app.app.get_functions(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'pydantic', 'urllib3', 'limits', 'idna')"
            " or m == 'shared.settings'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_host_auth_level_is_read_without_the_settings_model_and_agrees_with_it():
    from typing import get_args

    from shared.hostauth import MANAGEMENT_AUTH_MODES, management_host_auth_level
    from shared.settings import Settings

    assert get_args(Settings.model_fields["management_auth"].annotation) == MANAGEMENT_AUTH_MODES
    assert [management_host_auth_level({"MANAGEMENT_AUTH": m}) for m in MANAGEMENT_AUTH_MODES] == ["FUNCTION", "ANONYMOUS", "ANONYMOUS"]
    for typo in ("entr", "Entra", "function-key"):  # one reading for both: a typo is named, never a guessed mode
        with pytest.raises(SettingsError) as by_host:
            management_host_auth_level({"MANAGEMENT_AUTH": typo})
        with pytest.raises(SettingsError) as by_settings:
            Settings.from_env({"MANAGEMENT_AUTH": typo})
        assert by_host.value.setting == by_settings.value.setting == "MANAGEMENT_AUTH"
    assert management_host_auth_level({"MANAGEMENT_AUTH": " entra "}) == "ANONYMOUS"
    assert Settings.from_env({"MANAGEMENT_AUTH": " entra "}).management_auth == "entra"


def test_a_mistyped_management_auth_stops_the_worker_indexing_with_the_settings_name():
    env = {k: v for k, v in os.environ.items() if k != "MANAGEMENT_AUTH"} | {"MANAGEMENT_AUTH": "entr"}
    done = subprocess.run([sys.executable, "-c", "import function_app"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "SettingsError: MANAGEMENT_AUTH is invalid" in done.stderr, done.stderr[-2000:]
