"""The custom connector's Microsoft Entra ID (aad) variant, written by connector/aad_variant.py from the
API-key connector: only sign-in and host differ, it is still valid Swagger 2.0, and its connection
asks Entra ID for a token for the bridge's application ID URI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from openapi_spec_validator import validate

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "connector"))
import aad_variant  # noqa: E402

HOST = "func-abc123.azurewebsites.net"
CONNECTOR_APP = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
RESOURCE = "api://3c9d2e1f-8a7b-4c6d-9e0f-1a2b3c4d5e6f"
TENANT = "6f1f7a9e-2c3b-4d5e-8f90-a1b2c3d4e5f6"
BASE_DEFINITION = json.loads((ROOT / "connector" / "apiDefinition.swagger.json").read_text("utf-8"))
BASE_PROPERTIES = json.loads((ROOT / "connector" / "apiProperties.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def variant():
    return aad_variant.build(HOST, CONNECTOR_APP, RESOURCE, TENANT)


def test_the_variant_is_valid_swagger_2_and_differs_only_in_sign_in_title_and_host(variant):
    swagger, _ = variant
    validate(swagger)
    assert swagger["securityDefinitions"] == {"oauth2_auth": {
        "type": "oauth2", "flow": "accessCode", "authorizationUrl": "https://login.windows.net/common/oauth2/authorize",
        "tokenUrl": "https://login.windows.net/common/oauth2/authorize", "scopes": {}}}
    assert swagger["security"] == [{"oauth2_auth": []}] and swagger["host"] == HOST
    assert len(swagger["info"]["title"]) <= 30
    changed = {"securityDefinitions", "security", "host", "info"}
    assert {k: v for k, v in swagger.items() if k not in changed} == {k: v for k, v in BASE_DEFINITION.items() if k not in changed}
    assert {k: v for k, v in swagger["info"].items() if k != "title"} == {k: v for k, v in BASE_DEFINITION["info"].items() if k != "title"}


def test_the_connection_signs_in_with_entra_id_for_the_bridges_application_id_uri(variant):
    _, api_properties = variant
    props = api_properties["properties"]
    token = props["connectionParameters"]["token"]
    assert token["type"] == "oauthSetting"
    settings = token["oAuthSettings"]
    assert settings["identityProvider"] == "aad" and settings["clientId"] == CONNECTOR_APP
    assert settings["customParameters"]["resourceUri"] == {"value": RESOURCE}
    assert settings["customParameters"]["tenantId"] == {"value": TENANT}
    assert settings["customParameters"]["loginUri"] == {"value": "https://login.microsoftonline.com"}
    assert settings["redirectMode"] == "GlobalPerConnector" and settings["properties"]["IsFirstParty"] == "False"
    assert not [p for p in props["connectionParameters"].values() if p.get("type") == "securestring"]
    for name in ("iconBrandColor", "capabilities", "publisher", "stackOwner"):
        assert props.get(name) == BASE_PROPERTIES["properties"].get(name)


def test_a_per_connection_host_gives_way_to_the_fixed_bridge_host():
    """The reworked API-key connector takes the host per connection (dynamichosturl); an Entra ID
    connector belongs to one bridge registration, so its host is fixed."""
    base = json.loads(json.dumps(BASE_PROPERTIES))
    base["properties"]["connectionParameters"]["bridgeHost"] = {"type": "string", "uiDefinition": {"displayName": "Bridge host name"}}
    base["properties"]["policyTemplateInstances"] = [
        {"templateId": "dynamichosturl", "parameters": {"x-ms-apimTemplateParameter.urlTemplate": "https://@connectionParameters('bridgeHost')/api"}},
        {"templateId": "setheader", "parameters": {"x-ms-apimTemplateParameter.name": "X-A", "x-ms-apimTemplateParameter.value": "1"}}]
    props = aad_variant.properties(base, CONNECTOR_APP, RESOURCE, TENANT)["properties"]
    assert set(props["connectionParameters"]) == {"token"}
    assert [t["templateId"] for t in props["policyTemplateInstances"]] == ["setheader"]


@pytest.mark.parametrize("args", [["--host", "https://x.azurewebsites.net"], ["--client-id", "connector"],
                                  ["--resource", "bridge"], ["--tenant", "contoso"]])
def test_the_script_refuses_bad_arguments(tmp_path, args):
    base = {"--host": HOST, "--client-id": CONNECTOR_APP, "--resource": RESOURCE, "--tenant": TENANT, "--out": str(tmp_path)}
    base[args[0]] = args[1]
    done = subprocess.run([sys.executable, "connector/aad_variant.py", *[x for kv in base.items() for x in kv]],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "error:" in done.stderr and not list(tmp_path.iterdir())


def test_the_script_writes_both_files(tmp_path):
    done = subprocess.run([sys.executable, "connector/aad_variant.py", "--host", HOST, "--client-id", CONNECTOR_APP,
                           "--resource", RESOURCE, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "apiProperties.json").read_text("utf-8"))
    assert written["properties"]["connectionParameters"]["token"]["oAuthSettings"]["customParameters"]["tenantId"] == {"value": "common"}
    validate(json.loads((tmp_path / "apiDefinition.swagger.json").read_text("utf-8")))


def test_the_variant_obeys_the_validator_rules_the_api_key_connector_is_held_to(variant):
    """Every statically checkable rule of Microsoft's connector validator (tests/test_connector_definition.py),
    except the two about the API-key sign-in and the per-connection host, which the variant replaces."""
    from tests import test_connector_definition as rules

    swagger, api_properties = variant
    connector = rules.Connector(swagger, api_properties, (ROOT / "connector" / "icon.png").read_bytes())
    replaced = {"API key connection", "dynamichosturl from the bridgeHost connection parameter"}
    failing = {name: found for name, check in rules.RULES.items() if name not in replaced and (found := check(connector))}
    assert failing == {}
