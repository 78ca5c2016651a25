"""infra/: the Bicep parses (pycep, checkov's own parser) and says what the architecture promises
(Flex Consumption, identity-only access, exactly the roles the identity needs, azd names and tags),
passes checkov's Bicep scan with documented skips only, and every setting the code reads is in
main.bicep, the sample and the README. No Bicep CLI is needed."""
from __future__ import annotations

import json
import re
import subprocess
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
    assert "var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))" in text
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
    assert props["siteConfig"]["minTlsVersion"] == "1.2" and props["siteConfig"]["ftpsState"] == "Disabled"
    policies = resources(function, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(p)["name"]: body(p)["properties"]["allow"] for p in policies.values()} == {"ftp": False, "scm": False}
    bridge = parse(INFRA / "main.bicep")["modules"]["bridge"]["config"]["params"]
    assert bridge["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "bridge"}


def test_app_settings_are_identity_based_with_the_public_url_from_the_default_host_name():
    [settings] = [body(r) for r in resources(INFRA / "app" / "function.bicep").values()
                  if r["type"] in ("Microsoft.Web/sites/config", "config") or body(r).get("name") == "appsettings"]
    assert settings["name"] == "appsettings"
    fixed = settings["properties"]["function"]["parameters"]["arg_2"]
    assert fixed["AzureWebJobsStorage__credential"] == "managedidentity"
    assert fixed["AzureWebJobsStorage__accountName"] == "storageAccountName"
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
    assert azure["services"] == {"bridge": {"project": ".", "language": "python", "host": "function"}}
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
    product = [ROOT / "function_app.py", *(ROOT / "shared").rglob("*.py")]
    reads = [where for path in product if path.name != "settings.py" for where in _environment_reads(path)]
    assert reads == []
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
