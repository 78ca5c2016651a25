"""Write the Microsoft Entra ID (OAuth 2.0, ``aad`` identity provider) variant of the custom connector.

    python connector/aad_variant.py --host func-abc123.azurewebsites.net \\
        --client-id <connector client app id> --resource api://<bridge client id> [--tenant <tenant id>] \\
        [--out build/connector-aad]

It reads the API-key connector beside it (apiDefinition.swagger.json, apiProperties.json) and changes
only how a connection signs in: Entra ID sign-in for the bridge's application ID URI instead of a
function key, and the bridge's host fixed (an Entra ID connector belongs to one bridge registration).
Triggers, actions and dynamic content stay the API-key connector's, so the two never drift apart.
Step by step: connector/README.md, "Entra ID variant".
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TITLE = "Calendly Bridge (Entra ID)"  # connector titles are at most 30 characters
SECURITY = "oauth2_auth"
# What the Power Automate designer writes for an "Azure Active Directory" security definition.
SECURITY_DEFINITION = {"type": "oauth2", "flow": "accessCode",
                       "authorizationUrl": "https://login.windows.net/common/oauth2/authorize",
                       "tokenUrl": "https://login.windows.net/common/oauth2/authorize", "scopes": {}}
HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def definition(api_key_definition: dict, host: str) -> dict:
    swagger = copy.deepcopy(api_key_definition)
    swagger["info"]["title"] = TITLE
    swagger["host"] = host
    swagger["securityDefinitions"] = {SECURITY: dict(SECURITY_DEFINITION)}
    swagger["security"] = [{SECURITY: []}]
    return swagger


def properties(api_key_properties: dict, client_id: str, resource: str, tenant: str) -> dict:
    api_properties = copy.deepcopy(api_key_properties)
    props = api_properties["properties"]
    parameters = props.get("connectionParameters") or {}
    # The function key and a per-connection host give way to Entra ID sign-in for one bridge.
    parameters = {name: p for name, p in parameters.items()
                  if p.get("type") not in ("securestring", "oauthSetting") and name != "bridgeHost"}
    parameters["token"] = {
        "type": "oauthSetting",
        "uiDefinition": {"displayName": "Sign in with your work account",
                         "description": "Microsoft Entra ID sign-in to your Calendly trigger bridge",
                         "tooltip": "Your own account: you see and manage only your own triggers",
                         "constraints": {"required": "true"}},
        "oAuthSettings": {
            "identityProvider": "aad",
            "clientId": client_id,
            "scopes": [],
            # Each connector gets its own redirect URL (shown on its Security tab once created):
            # add it to the client app registration's web redirect URIs.
            "redirectMode": "GlobalPerConnector",
            "properties": {"IsFirstParty": "False", "AzureActiveDirectoryResourceId": resource},
            "customParameters": {"loginUri": {"value": "https://login.microsoftonline.com"},
                                 "tenantId": {"value": tenant}, "resourceUri": {"value": resource},
                                 "enableOnbehalfOfLogin": {"value": "false"}},
        },
    }
    props["connectionParameters"] = parameters
    templates = [t for t in props.get("policyTemplateInstances") or [] if str(t.get("templateId")).lower() != "dynamichosturl"]
    if templates:
        props["policyTemplateInstances"] = templates
    else:
        props.pop("policyTemplateInstances", None)
    return api_properties


def build(host: str, client_id: str, resource: str, tenant: str = "common", source: Path = HERE) -> tuple[dict, dict]:
    if not HOST.match(host):
        raise ValueError("--host is the bridge's host name, without https:// or a path")
    if not GUID.match(client_id):
        raise ValueError("--client-id is the connector's client app registration id (a GUID)")
    if not resource.startswith(("api://", "https://")):
        raise ValueError("--resource is the bridge registration's application ID URI, e.g. api://<client id>")
    if tenant != "common" and not GUID.match(tenant):
        raise ValueError("--tenant is a tenant id (a GUID) or common")
    swagger = json.loads((source / "apiDefinition.swagger.json").read_text("utf-8"))
    api_properties = json.loads((source / "apiProperties.json").read_text("utf-8"))
    return definition(swagger, host), properties(api_properties, client_id, resource, tenant)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the Entra ID variant of the custom connector.")
    parser.add_argument("--host", required=True, help="the bridge's host name, e.g. func-abc123.azurewebsites.net")
    parser.add_argument("--client-id", required=True, help="application (client) id of the connector's app registration")
    parser.add_argument("--resource", required=True, help="application ID URI of the bridge's app registration")
    parser.add_argument("--tenant", default="common", help="tenant id users sign in to (default: common)")
    parser.add_argument("--out", default="build/connector-aad", help="output folder")
    args = parser.parse_args(argv)
    try:
        swagger, api_properties = build(args.host, args.client_id, args.resource, args.tenant)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "apiDefinition.swagger.json").write_text(json.dumps(swagger, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (out / "apiProperties.json").write_text(json.dumps(api_properties, indent=2, ensure_ascii=False) + "\n", "utf-8")
    if (HERE / "icon.png").exists():
        shutil.copyfile(HERE / "icon.png", out / "icon.png")
    print(f"wrote {out}/apiDefinition.swagger.json, apiProperties.json and icon.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
