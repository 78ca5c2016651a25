"""infra/: the Bicep parses (pycep, checkov's own parser) and says what the architecture promises
(Flex Consumption as Microsoft documents it, identity-only access, endpoints from the resources'
own properties, exactly the roles the identity needs, azd names and tags, alert rules over the
log lines the code emits), passes checkov's Bicep scan with documented skips only, the deploy
guide's commands and .funcignore fit a fresh clone, and every setting the code reads is in
main.bicep, the sample and the README. No Bicep CLI is needed."""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import pytest
import yaml
from pycep import BicepParser

from shared.settings import Settings
from tests.conftest import ROOT

INFRA = ROOT / "infra"
BICEP = sorted(INFRA.rglob("*.bicep"))
SETTINGS = Settings.declared()
# Built-in role definition ids (the same in every Azure tenant).
IDENTITY_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
# Resources that take no tags: extension resources and children of a tagged parent.
UNTAGGED = ("Microsoft.Authorization/",)


@cache
def parse(path: Path) -> dict:
    return BicepParser().parse(file_path=path)


def body(resource: dict) -> dict:
    """A resource's declaration, unwrapped from `if (...)`."""
    config = resource["config"]
    return config["config"] if "condition" in config else config


def resources(path: Path, type_: str | None = None) -> dict[str, dict]:
    found = parse(path).get("resources") or {}
    return {name: r for name, r in found.items() if type_ is None or r["type"] == type_}


def one(path: Path, type_: str) -> dict:
    [resource] = resources(path, type_).values()
    return body(resource)


def accessor(expr) -> str | None:
    """`roles.storageBlobDataOwner` -> 'storageBlobDataOwner' (pycep's property_accessor)."""
    if isinstance(expr, dict) and expr.get("operator", {}).get("type") == "property_accessor":
        return expr["operator"]["operands"]["operand_2"]
    return None


# Parsing and composition ---------------------------------------------------------------------
@pytest.mark.parametrize("path", BICEP, ids=lambda p: str(p.relative_to(ROOT)))
def test_bicep_file_parses(path):
    parsed = parse(path)
    assert parsed.get("resources") or parsed.get("modules")


def test_modules_exist_and_get_every_required_parameter():
    main = parse(INFRA / "main.bicep")
    assert main["modules"], "main.bicep composes modules"
    for name, module in main["modules"].items():
        path = INFRA / module["detail"]["path"]
        assert path.exists(), f"module {name}: {path} is missing"
        declared = parse(path)["parameters"]
        passed = set(module["config"]["params"])
        assert passed <= set(declared), f"module {name} passes unknown params {passed - set(declared)}"
        required = {p for p, spec in declared.items() if spec.get("default") is None}
        assert required <= passed, f"module {name} misses {required - passed}"


def test_every_module_file_is_used():
    used = {(INFRA / m["detail"]["path"]).resolve() for m in parse(INFRA / "main.bicep")["modules"].values()}
    assert used == {p.resolve() for p in (INFRA / "app").glob("*.bicep")}


def test_main_is_resource_group_scoped_for_azd_and_the_cli_alike():
    text = (INFRA / "main.bicep").read_text()
    assert re.search(r"^targetScope = 'resourceGroup'$", text, re.M)
    assert "resourceGroup().location" in text


def test_names_come_from_abbreviations_and_the_resource_token():
    text = (INFRA / "main.bicep").read_text()
    # The resource group is in the token: the same environment name and region in two resource
    # groups of one subscription must not collide on globally unique names (storage, Key Vault).
    token = "var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))"
    assert token in text
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    used = set(re.findall(r"abbrs\.(\w+)", text))
    assert used and used <= set(abbreviations), used - set(abbreviations)


def test_every_resource_carries_the_azd_env_name_tag():
    main = parse(INFRA / "main.bicep")
    assert main["variables"]["tags"]["value"] == {"'azd-env-name'": "environmentName"}
    for name, module in main["modules"].items():
        if "tags" in parse(INFRA / module["detail"]["path"])["parameters"]:
            assert "tags" in json.dumps(module["config"]["params"].get("tags")), f"module {name} does not pass tags"
    for path in BICEP:
        for name, resource in resources(path).items():
            top_level = resource["type"].count("/") == 1
            if resource["existing"] or not top_level or resource["type"].startswith(UNTAGGED):
                continue
            assert "tags" in body(resource), f"{path.name}: {name} ({resource['type']}) has no tags"


# What the resources promise ------------------------------------------------------------------
def test_function_app_is_flex_consumption_python_311_tagged_as_the_bridge_service():
    function = INFRA / "app" / "function.bicep"
    plan = one(function, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"} and plan["properties"]["reserved"] is True
    site = one(function, "Microsoft.Web/sites")
    props = site["properties"]
    assert site["kind"] == "functionapp,linux" and site["identity"]["type"] == "UserAssigned"
    assert props["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    storage = props["functionAppConfig"]["deployment"]["storage"]
    assert storage["type"] == "blobContainer" and storage["authentication"]["type"] == "UserAssignedIdentity"
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    # FTP is off through the publishing-credentials policies (Flex rejects siteConfig.ftpsState).
    policies = resources(function, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(p)["name"]: body(p)["properties"]["allow"] for p in policies.values()} == {"ftp": False, "scm": False}
    assert all(body(p).get("location") == "location" for p in policies.values()), "the policies name their location"
    bridge = parse(INFRA / "main.bicep")["modules"]["bridge"]["config"]["params"]
    assert bridge["serviceName"] == "bridge" == next(iter(yaml.safe_load((ROOT / "azure.yaml").read_text())["services"]))


def test_app_settings_are_identity_based_with_the_public_url_from_the_default_host_name():
    [settings] = [body(r) for r in resources(INFRA / "app" / "function.bicep").values()
                  if r["type"] in ("Microsoft.Web/sites/config", "config") or body(r).get("name") == "appsettings"]
    assert settings["name"] == "appsettings"
    fixed = settings["properties"]["function"]["parameters"]["arg_2"]
    assert fixed["AzureWebJobsStorage__credential"] == "managedidentity"
    assert fixed["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert fixed["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert fixed["BRIDGE_PUBLIC_URL"] == "https://${site.properties.defaultHostName}"
    for setting in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "AzureWebJobsStorage"):
        assert not re.search(rf"^\s*{setting}:", (INFRA / "app" / "function.bicep").read_text(), re.M), \
            f"{setting} is not allowed (Flex Consumption) or not wanted (keys) in Azure"


def test_no_keys_or_connection_strings_anywhere():
    for path in BICEP:
        text = path.read_text()
        for secretish in ("listKeys(", "AccountKey=", "SharedAccessKey", "listConnectionStrings("):
            assert secretish not in text, f"{path.name} uses {secretish}"
    storage = one(INFRA / "app" / "storage.bicep", "Microsoft.Storage/storageAccounts")["properties"]
    assert storage["allowSharedKeyAccess"] is False and storage["allowBlobPublicAccess"] is False
    assert storage["minimumTlsVersion"] == "TLS1_2"
    vault = one(INFRA / "app" / "keyvault.bicep", "Microsoft.KeyVault/vaults")["properties"]
    assert vault["enableRbacAuthorization"] is True
    namespace = one(INFRA / "app" / "servicebus.bicep", "Microsoft.ServiceBus/namespaces")
    assert namespace["sku"]["name"] == "Standard" and namespace["properties"]["disableLocalAuth"] is True
    insights = one(INFRA / "app" / "monitoring.bicep", "Microsoft.Insights/components")["properties"]
    assert insights["DisableLocalAuth"] is True


def test_storage_has_the_deployment_container_and_the_retry_queue():
    storage = INFRA / "app" / "storage.bicep"
    assert resources(storage, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert resources(storage, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert resources(storage, "Microsoft.Storage/storageAccounts/tableServices")
    main = parse(INFRA / "main.bicep")
    assert main["variables"]["deliveryQueue"]["value"] == "calendly-deliveries" == SETTINGS["DELIVERY_QUEUE"]["default"]


def test_service_bus_queue_drops_duplicate_deliveries():
    queue = one(INFRA / "app" / "servicebus.bicep", "Microsoft.ServiceBus/namespaces/queues")
    assert queue["properties"]["requiresDuplicateDetection"] is True
    assert parse(INFRA / "main.bicep")["variables"]["serviceBusQueue"]["value"] == "calendly-events"


def test_rbac_grants_the_identity_exactly_its_six_roles_and_the_user_only_secrets_officer():
    rbac = INFRA / "app" / "rbac.bicep"
    role_ids = parse(rbac)["variables"]["roles"]["value"]
    granted: dict[str, set[str]] = {}
    for resource in resources(rbac, "Microsoft.Authorization/roleAssignments").values():
        props = body(resource)["properties"]
        role = role_ids[accessor(props["roleDefinitionId"]["function"]["parameters"]["resource_name_1"])]
        granted.setdefault(props["principalId"], set()).add(role)
        if props["principalId"] == "userPrincipalId":
            assert "condition" in resource["config"], "the user's role must be conditional on principalId"
    assert granted.pop("identityPrincipalId") == set(IDENTITY_ROLES)
    assert granted == {"userPrincipalId": {KEY_VAULT_SECRETS_OFFICER}}
    rbac_module = parse(INFRA / "main.bicep")["modules"]["rbac"]["config"]["params"]
    assert rbac_module["userPrincipalId"] == "principalId"


# Flex Consumption as Microsoft documents it ----------------------------------------------------
# Microsoft's "Flex Consumption plan deprecations" (App settings reference for Azure Functions):
# site properties and app settings Flex deprecates; several are rejected outright in newer regions
# (ftpsState: ARM error 51021, "FTPS not supported").
FLEX_DEPRECATED_SITE_PROPERTIES = {
    "alwaysOn", "containerSize", "ftpsState", "isReserved", "IsXenon", "javaVersion", "linuxFxVersion",
    "netFrameworkVersion", "powerShellVersion", "functionAppScaleLimit", "preWarmedInstanceCount",
    "use32BitWorkerProcess", "vnetBackupRestoreEnabled", "vnetContentShareEnabled", "vnetImagePullEnabled",
    "vnetRouteAllEnabled", "windowsFxVersion",
}
FLEX_DEPRECATED_APP_SETTINGS = {
    "ENABLE_ORYX_BUILD", "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY", "FUNCTIONS_WORKER_PROCESS_COUNT", "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "SCM_DO_BUILD_DURING_DEPLOYMENT", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE", "WEBSITE_DNS_SERVER", "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION", "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL",
}
FUNCTION = INFRA / "app" / "function.bicep"


def keys(tree) -> set[str]:
    """Every object key anywhere in a parsed resource (pycep keeps Bicep's keys as they are)."""
    if isinstance(tree, dict):
        return set(tree) | {k for value in tree.values() for k in keys(value)}
    if isinstance(tree, list):
        return {k for item in tree for k in keys(item)}
    return set()


def dotted(expr) -> str:
    """pycep's accessor tree back to Bicep: `storage.properties.primaryEndpoints.blob`."""
    if not isinstance(expr, dict):
        return str(expr)
    operator = expr["operator"]
    left, right = operator["operands"]["operand_1"], operator["operands"]["operand_2"]
    if operator["type"] == "property_accessor":
        return f"{dotted(left)}.{dotted(right)}"
    assert operator["type"] == "index_accessor", operator
    return f"{dotted(left)}[{dotted(right)}]"


def evaluate(expr, values: dict[str, str]):
    """Just enough of Bicep for string plumbing: split(), [i], literals and the given properties."""
    if isinstance(expr, (str, int)):
        return expr
    if "function" in expr:
        function = expr["function"]
        assert function["type"] == "split", function
        return evaluate(function["parameters"]["input_string"], values).split(function["parameters"]["delimiter"])
    operator = expr["operator"]
    if operator["type"] == "index_accessor":
        return evaluate(operator["operands"]["operand_1"], values)[operator["operands"]["operand_2"]]
    return values[dotted(expr)]


def app_settings() -> dict:
    """Every app setting Bicep gives the Function App: main.bicep's plus function.bicep's own."""
    passed = parse(INFRA / "main.bicep")["modules"]["bridge"]["config"]["params"]["appSettings"]
    fixed = body(resources(FUNCTION)["site__settings"])["properties"]["function"]["parameters"]["arg_2"]
    assert not set(passed) & set(fixed), "one home per setting"
    return {**passed, **fixed}


def test_no_site_property_or_app_setting_that_flex_consumption_deprecates():
    site = one(FUNCTION, "Microsoft.Web/sites")
    used = {k.lower() for k in keys(site)} | {k.lower() for k in app_settings()}
    deprecated = {name.lower() for name in FLEX_DEPRECATED_SITE_PROPERTIES | FLEX_DEPRECATED_APP_SETTINGS}
    assert not used & deprecated, f"Flex Consumption deprecates {sorted(used & deprecated)}"
    # What replaced them: runtime, scale and deployment in functionAppConfig.
    assert {"runtime", "scaleAndConcurrency", "deployment"} <= set(site["properties"]["functionAppConfig"])
    plan = one(FUNCTION, "Microsoft.Web/serverfarms")
    assert plan["properties"] == {"reserved": True}, "a Flex plan takes nothing but reserved (Linux)"


def test_the_azd_service_tag_is_on_the_site_only():
    # azd before 1.23.4 fails when two resources carry the service's tag (here: plan and site).
    tagged = [(path.name, r["type"]) for path in BICEP for r in resources(path).values()
              if "azd-service-name" in json.dumps(body(r).get("tags"))]
    assert tagged == [("function.bicep", "Microsoft.Web/sites")]
    assert one(FUNCTION, "Microsoft.Web/serverfarms")["tags"] == "tags"
    for name, module in parse(INFRA / "main.bicep")["modules"].items():
        assert "azd-service-name" not in json.dumps(module["config"]["params"].get("tags")), name


def test_endpoints_come_from_the_resources_own_properties():
    # Nothing built from a cloud's DNS suffix (public cloud or environment()): sovereign clouds work.
    for path in BICEP:
        code = json.dumps(parse(path))  # parsed, so comments do not count
        for suffix in ("core.windows.net", "servicebus.windows.net", "vault.azure.net", "azurewebsites.net"):
            assert suffix not in code, f"{path.name} builds an endpoint from {suffix!r}"
        assert '"type": "environment"' not in code and "environment()" not in code, \
            f"{path.name} builds an endpoint from environment().suffixes"
    storage = resources(FUNCTION)["storage"]
    assert storage["existing"] and body(storage)["name"] == "storageAccountName"
    settings = app_settings()
    for service in ("blob", "queue", "table"):
        assert dotted(settings[f"AzureWebJobsStorage__{service}ServiceUri"]) == \
            f"storage.properties.primaryEndpoints.{service}"
    assert "AzureWebJobsStorage__accountName" not in settings, "the host would build public-cloud URLs from it"
    deployment = one(FUNCTION, "Microsoft.Web/sites")["properties"]["functionAppConfig"]["deployment"]["storage"]
    assert deployment["value"] == "${storage.properties.primaryEndpoints.blob}${deploymentContainer}"
    # Key Vault and Service Bus: from the resources' outputs, which read their own properties.
    assert dotted(settings["KEY_VAULT_URL"]) == "vault.outputs.uri"
    assert dotted(parse(INFRA / "app" / "keyvault.bicep")["outputs"]["uri"]["value"]) == "vault.properties.vaultUri"
    assert dotted(settings["SERVICEBUS_FULLY_QUALIFIED_NAMESPACE"]) == "messaging.outputs.fullyQualifiedNamespace"
    host = parse(INFRA / "app" / "servicebus.bicep")["outputs"]["fullyQualifiedNamespace"]["value"]
    for endpoint, expected in [("https://sb-x.servicebus.windows.net:443/", "sb-x.servicebus.windows.net"),
                               ("https://sb-x.servicebus.chinacloudapi.cn:443/", "sb-x.servicebus.chinacloudapi.cn"),
                               ("https://sb-x.servicebus.usgovcloudapi.net/", "sb-x.servicebus.usgovcloudapi.net"),
                               ("https://sb-x.servicebus.usgovcloudapi.net", "sb-x.servicebus.usgovcloudapi.net")]:
        assert evaluate(host, {"namespace.properties.serviceBusEndpoint": endpoint}) == expected


def test_trigger_binding_expressions_resolve_from_app_settings_that_always_exist():
    # function_app.py's triggers read %RECONCILE_SCHEDULE% and %DELIVERY_QUEUE%, which the Functions
    # host resolves from app settings at startup: a missing one stops the host.
    settings, main = app_settings(), parse(INFRA / "main.bicep")
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    schedule = main["parameters"][settings["RECONCILE_SCHEDULE"]]
    assert schedule["default"] == "0 */15 * * * *" == sample["RECONCILE_SCHEDULE"]
    assert {"type": "min_length", "argument": 1} in schedule["decorators"], "an empty schedule is refused"
    assert main["variables"][settings["DELIVERY_QUEUE"]]["value"] == "calendly-deliveries" == sample["DELIVERY_QUEUE"]
    literals = [node.value for node in ast.walk(ast.parse((ROOT / "function_app.py").read_text()))
                if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    expressions = {m.group(1) for value in literals if (m := re.fullmatch(r"%(\w+)%", value))}
    assert {"RECONCILE_SCHEDULE", "DELIVERY_QUEUE"} <= expressions, "the triggers bind their settings by expression"
    assert expressions <= set(settings), f"binding expressions without an app setting: {expressions - set(settings)}"


# Alerts ----------------------------------------------------------------------------------------
ALERTS = INFRA / "app" / "alerts.bicep"


def alerts() -> list[dict]:
    return parse(ALERTS)["variables"]["alerts"]["value"]


def shared_modules() -> dict[Path, str]:
    return {path: path.read_text("utf-8") for path in sorted((ROOT / "shared").rglob("*.py"))}


def logged_keys(source: str) -> set[str]:
    """The `key=` names a module can write: inside its string literals (f-string parts too), plus
    the string keys of its dict literals and the field names of its dataclasses (lines built as
    " ".join(f"{k}={v}" ...) from a dict or a report's fields)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= set(re.findall(r"(\w+)=", node.value))
        elif isinstance(node, ast.Dict):
            found |= {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        elif isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
            found |= {f.target.id for f in node.body if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)}
    return found


def test_alert_rules_cover_what_an_operator_must_notice():
    assert {a["name"] for a in alerts()} == {"dead-delivery", "reconcile-errors", "callback-5xx", "callback-401-burst",
                                             "keyvault-failures"}
    [rules] = resources(ALERTS, "Microsoft.Insights/scheduledQueryRules").values()
    assert rules["config"]["loop_type"]["detail"]["array_name"] == "alerts"
    rule = body(rules)
    props = rule["properties"]
    assert rule["kind"] == "LogAlert" and props["enabled"] is True
    assert [dotted(scope) for scope in props["scopes"]] == ["appInsights.id"]
    assert resources(ALERTS)["appInsights"]["existing"]
    [criterion] = props["criteria"]["allOf"]
    assert dotted(criterion["query"]) == "alert.query" and criterion["timeAggregation"] == "Count"
    assert dotted(criterion["dimensions"]) == "alert.dimensions"
    for alert in alerts():
        assert alert["severity"] in (1, 2) and alert["window"] in ("PT5M", "PT15M")
        if alert["name"] == "callback-401-burst":
            assert (alert["operator"], alert["threshold"]) == ("GreaterThanOrEqual", "unauthorizedBurstThreshold")
        else:  # any single occurrence is worth an alert
            assert (alert["operator"], alert["threshold"]) == ("GreaterThan", 0)
        projected = re.search(r"\| project ([^\n]+)", alert["query"]).group(1)
        for dimension in alert["dimensions"]:  # split by a column the query returns, every value
            assert dimension["name"] in {c.strip() for c in projected.split(",")}, alert["name"]
            assert (dimension["operator"], dimension["values"]) == ("Include", ["*"])
    main = parse(INFRA / "main.bicep")
    assert main["parameters"]["unauthorizedBurstThreshold"]["default"] == 10


def test_each_alert_query_reads_only_log_lines_and_keys_the_code_emits():
    modules = shared_modules()
    function_app = (ROOT / "function_app.py").read_text()
    for alert in alerts():
        query = alert["query"]
        table = query.split()[0]
        assert table in ("traces", "requests"), alert["name"]
        if table == "traces":
            prefixes = re.findall(r'startswith "(\w+ outcome=)', query)
            assert prefixes, f"{alert['name']}: traces are matched by their `<area> outcome=` prefix"
            writers = {path: source for path, source in modules.items() if any(f'"{p}' in source for p in prefixes)}
            assert all(any(f'"{p}' in source for source in writers.values()) for p in prefixes), \
                f"{alert['name']}: no log line in shared/ starts with {prefixes}"
            emitted = set().union(*map(logged_keys, writers.values()))
            parsed = re.search(r"parse-kv message as \(([^)]*)\)", query).group(1)
            for key in (item.split(":")[0].strip() for item in parsed.split(",")):
                assert key in emitted, f"{alert['name']}: {sorted(p.name for p in writers)} never log {key}="
        else:  # the Functions host's request telemetry is named after the function
            [function] = re.findall(r'name == "(\w+)"', query)
            assert re.search(rf"^\s*def {function}\(", function_app, re.M), f"no function {function} in function_app.py"


def test_alerts_mail_the_operator_when_an_address_is_given():
    main = parse(INFRA / "main.bicep")
    assert main["parameters"]["alertEmail"]["default"] == ""
    assert main["modules"]["alerts"]["config"]["params"]["alertEmail"] == "alertEmail"
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["alertEmail"]["value"] == "${ALERT_EMAIL}"
    group = resources(ALERTS)["actionGroup"]
    assert "condition" in group["config"] and "empty" in json.dumps(group["config"]["condition"]), \
        "no e-mail address, no action group"
    props = body(group)["properties"]
    assert body(group)["location"] == "global" and len(props["groupShortName"]) <= 12
    assert [r["emailAddress"] for r in props["emailReceivers"]] == ["alertEmail"]
    [rules] = resources(ALERTS, "Microsoft.Insights/scheduledQueryRules").values()
    choice = body(rules)["properties"]["actions"]["actionGroups"]["operator"]["operands"]
    assert choice["true_value"] == [] and [dotted(g) for g in choice["false_value"]] == ["actionGroup.id"]


def test_the_observability_guide_shows_every_alert_query():
    guide = (ROOT / "docs" / "observability.md").read_text()
    blocks = {block.strip() for block in re.findall(r"```kusto\n(.*?)```", guide, re.S)}
    for alert in alerts():
        assert alert["query"].strip() in blocks, f"docs/observability.md lacks the {alert['name']} query as deployed"
        assert alert["displayName"] in guide


# The deploy guide and .funcignore --------------------------------------------------------------
GUIDES = sorted([*(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("*.md"), *(ROOT / "connector").glob("*.md")])
# What a developer's clone holds that must never ship (the list first).
LOCAL_ARTIFACTS = [
    ".python_packages/lib/site-packages/requests/__init__.py", "__blobstorage__/0/blob", "__queuestorage__/0/queue",
    "htmlcov/index.html", ".coverage", ".checkov/results.json",
    ".venv/bin/python", ".venv-checkov/bin/checkov", "node_modules/azurite/package.json", "local.settings.json",
    "__azurite_db_blob__.json", ".azurite/blob", ".bridge/bridge.sqlite3", "shared/__pycache__/api.cpython-311.pyc",
    ".pytest_cache/v/cache/nodeids", ".hypothesis/examples/x", "tests/test_infra.py", "benchmarks/run.py",
    "infra/main.bicep", "docs/deploy.md", "package.json", "requirements-dev.txt",
]


def ignored_by_funcignore(paths: list[str]) -> set[str]:
    """The paths .funcignore leaves out, by git's own gitignore matcher (.funcignore's syntax)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "init", "-q", tmp], check=True)
        shutil.copy(ROOT / ".funcignore", Path(tmp) / ".gitignore")
        done = subprocess.run(["git", "-C", tmp, "check-ignore", "--no-index", "--stdin"], input="\n".join(paths),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode in (0, 1), done.stderr
        return set(done.stdout.split())


def test_funcignore_leaves_every_local_artifact_out_and_the_app_in():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    ignored = ignored_by_funcignore(LOCAL_ARTIFACTS + tracked)
    assert not set(LOCAL_ARTIFACTS) - ignored, f"would be published: {sorted(set(LOCAL_ARTIFACTS) - ignored)}"
    app = {"function_app.py", "host.json", "requirements.txt"} | {p for p in tracked if p.startswith("shared/")}
    assert len(app) > 10 and not app & ignored, f"the app itself is ignored: {sorted(app & ignored)}"
    # Whatever git ignores is a local artifact too.
    patterns = lambda path: {line.strip() for line in path.read_text().splitlines()  # noqa: E731
                             if line.strip() and not line.startswith("#")}
    assert patterns(ROOT / ".gitignore") <= patterns(ROOT / ".funcignore"), \
        patterns(ROOT / ".gitignore") - patterns(ROOT / ".funcignore")


def test_every_publish_command_names_the_python_runtime():
    # Without local.settings.json (a fresh clone) Core Tools cannot tell the project's language.
    commands = [(path.name, line) for path in GUIDES for line in path.read_text().splitlines()
                if "func azure functionapp publish" in line]
    assert commands, "docs/deploy.md shows the publish command"
    assert all("--python" in line for _, line in commands), [c for c in commands if "--python" not in c[1]]


def test_the_deploy_guide_asks_for_an_azd_that_handles_funcignore_and_one_service_tag():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    versions = [tuple(map(int, v)) for v in re.findall(r"azd[^\n]*?\b(\d+)\.(\d+)\.(\d+) or later", guide, re.I)]
    # 1.23.4: duplicate service tags; 1.23.12/1.23.13: .funcignore on Flex (remoteBuild, BOM, negations).
    assert versions and min(versions) >= (1, 23, 13), versions
    assert not re.search(r"\b1\.(1\d|2[0-2])\b", guide), "an older azd version is still named"


def test_the_deploy_guide_documents_every_parameter():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    missing = {p for p in parse(INFRA / "main.bicep")["parameters"] if f"`{p}`" not in guide}
    assert not missing, f"docs/deploy.md's parameter table misses {missing}"


# azd -------------------------------------------------------------------------------------------
def test_parameters_file_is_azd_style_and_matches_main():
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = parse(INFRA / "main.bicep")["parameters"]
    assert set(parameters) <= set(declared)
    assert {p for p, spec in declared.items() if spec.get("default") is None} <= set(parameters)
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert parameters["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


def test_azure_yaml_deploys_the_repository_as_the_bridge_function_app():
    azure = yaml.safe_load((ROOT / "azure.yaml").read_text())
    # remoteBuild pinned (azd 1.23.5+): requirements.txt is installed on Azure, which is why
    # .funcignore leaves every local build artifact out of the package.
    assert azure["services"] == {"bridge": {"project": ".", "language": "python", "host": "function",
                                            "remoteBuild": True}}
    assert azure["infra"]["path"] == "infra" and azure["infra"].get("module", "main") == "main"


def test_outputs_are_what_azd_and_the_deploy_guide_need():
    outputs = set(parse(INFRA / "main.bicep")["outputs"])
    assert {"BRIDGE_URL", "FUNCTION_APP_NAME", "KEY_VAULT_NAME", "SERVICEBUS_NAMESPACE", "AZURE_RESOURCE_GROUP",
            "AZURE_LOCATION"} <= outputs
    guide = (ROOT / "docs" / "deploy.md").read_text()
    assert not {o for o in outputs if f"`{o}`" not in guide}, "docs/deploy.md explains every output"


def test_the_logic_app_example_deploys_its_workflow_with_every_parameter_set():
    path = ROOT / "examples" / "logic-app" / "workflow.bicep"
    workflow = body(resources(path, "Microsoft.Logic/workflows")["workflow"])
    definition = json.loads((path.parent / "workflow.json").read_text())["definition"]
    assert set(workflow["properties"]["parameters"]) == set(definition["parameters"])
    key = parse(path)["parameters"]["bridgeFunctionKey"]
    assert any(d["type"] == "secure" for d in key["decorators"]), "the function key is a secure parameter"
    assert definition["parameters"]["bridgeFunctionKey"]["type"] == "SecureString"


# checkov ---------------------------------------------------------------------------------------
def _checkov(*args: str) -> dict:
    done = subprocess.run(["bash", "scripts/checkov.sh", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.stdout.strip(), f"checkov printed nothing (exit {done.returncode}): {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    return report[0] if isinstance(report, list) else report


def _documented_skips() -> dict[str, str]:
    config = yaml.safe_load((INFRA / ".checkov.yaml").read_text())
    reasons = dict(re.findall(r"^\s*-\s*(CKV_\w+)\s*#\s*(.+)$", (INFRA / ".checkov.yaml").read_text(), re.M))
    assert set(config["skip-check"]) == set(reasons), "every skip needs a `# reason` on its line"
    assert all(len(reason) > 20 for reason in reasons.values())
    return reasons


def test_checkov_bicep_scan_passes_with_documented_skips_only():
    _documented_skips()
    for path in BICEP:
        assert "checkov:skip" not in path.read_text(), f"{path.name}: skip in .checkov.yaml, with the reason"
    report = _checkov()
    summary = report["summary"]
    assert summary["resource_count"] > 10 and summary["passed"] > 10, f"checkov scanned (almost) nothing: {summary}"
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0, \
        [(c["check_id"], c["resource"]) for c in report["results"].get("failed_checks", [])]


def test_every_checkov_skip_is_still_needed():
    report = _checkov("--skip-check", "CKV_NONE")  # overrides the config's list: what fails without skips
    failing = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert set(_documented_skips()) == failing, f"stale skips: {set(_documented_skips()) - failing}"


# Settings coverage -----------------------------------------------------------------------------
def _environment_reads(path) -> list[str]:
    """Where a module reads the process environment (os.environ, os.getenv, os.putenv)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb", "putenv"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_only_the_settings_module_reads_the_environment():
    """And shared/hostauth.py, which reads the one setting the host needs when it indexes the app
    (MANAGEMENT_AUTH), without loading the settings model (cold start)."""
    product = [ROOT / "function_app.py", *(ROOT / "shared").rglob("*.py")]
    reads = [where for path in product if path.name not in ("settings.py", "hostauth.py") for where in _environment_reads(path)]
    assert reads == []
    assert len(_environment_reads(ROOT / "shared" / "hostauth.py")) == 1
    assert _environment_reads(ROOT / "shared" / "settings.py"), "the scan found nothing: it is broken"


def test_every_setting_is_in_bicep_the_sample_and_the_readme():
    bicep = (INFRA / "main.bicep").read_text() + (INFRA / "app" / "function.bicep").read_text()
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    readme = (ROOT / "README.md").read_text()
    for name, declared in SETTINGS.items():
        if declared["platform"]:
            continue  # set by Azure itself (WEBSITE_HOSTNAME)
        # The identity-based storage settings are Azure's alternative to the sample's Azurite
        # connection string; the Functions host must not see both.
        assert name in sample or name.startswith("AzureWebJobsStorage__"), f"{name} missing from local.settings.sample.json"
        assert f"`{name}`" in readme, f"{name} missing from the README's settings table"
        if declared["local_only"]:
            assert name in bicep, f"{name} should be named in main.bicep's comment of local-only settings"
        else:
            assert re.search(rf"^\s*{re.escape(name)}:", bicep, re.M), f"{name} is not set as an app setting in Bicep"


def test_the_sample_settings_are_valid_and_agree_with_the_declared_defaults():
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    Settings.from_env(sample)  # raises SettingsError naming any invalid value
    for name, value in sample.items():
        if name in SETTINGS and value and name not in ("CALENDLY_API_BASE", "ALLOW_INSECURE_TARGETS", "BRIDGE_PUBLIC_URL"):
            default = SETTINGS[name]["default"]
            assert default is None or str(default) == value, f"{name}: sample {value!r} vs default {default!r}"
