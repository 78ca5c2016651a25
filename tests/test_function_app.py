"""The Functions surface as declared in function_app.py (what Azure will index)."""
import ast
from pathlib import Path

from tests.conftest import ROOT, declared_functions

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


def test_only_the_calendly_callback_and_health_are_anonymous():
    anonymous = {key for key, level in _http_routes().items() if level == "ANONYMOUS"}
    assert anonymous == {("POST", "calendly/events/{id}"), ("GET", "health")}


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
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            assert len(node.body) <= 6, f"{node.name} does more than parse, call shared/ and shape the response"


def _trigger(name):
    [fn] = [fn for fn in declared_functions() if fn.get_function_name() == name]
    return fn.get_trigger()


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
