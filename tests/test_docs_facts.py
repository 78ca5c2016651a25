"""What the docs say agrees with the code and with the facts they quote (Microsoft's and
Calendly's documentation as of late 2026; the facts themselves are checked by reading those docs,
not here)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def text(path: str) -> str:
    return (ROOT / path).read_text("utf-8")


def test_flex_consumption_instance_limit_is_1_to_1000_everywhere():
    # Microsoft: the lowest maximumInstanceCount of a Flex Consumption app is 1, the highest 1000.
    for path in ("infra/main.bicep", "infra/app/function.bicep"):
        block = re.search(r"((?:@\w+\([^)]*\)\s*)+)param maximumInstanceCount int", text(path)).group(1)
        assert "@minValue(1)" in block and "@maxValue(1000)" in block, path
    assert "Flex Consumption scale-out limit (1–1000)" in text("docs/deploy.md")
    assert "40-1000" not in text("infra/main.bicep") and "40–1000" not in text("docs/deploy.md")


def test_power_automate_unsubscribe_is_described_as_documented():
    # Microsoft documents the custom connector's DELETE on trigger update and flow deletion only.
    swagger = json.loads(text("connector/apiDefinition.swagger.json"))
    descriptions = json.dumps(swagger) + text("connector/README.md")
    assert "turned off" not in descriptions.replace("turning a flow\noff", "")
    assert "when the trigger is updated or the flow is deleted" in json.dumps(swagger)


def test_token_version_follows_the_registration_and_the_docs_say_so():
    registration = json.loads(text("infra/entra/api.json"))
    assert registration["api"]["requestedAccessTokenVersion"] == 2
    readme, connector = text("README.md"), text("connector/README.md")
    assert "requestedAccessTokenVersion" in readme and "requestedAccessTokenVersion" in connector
    assert "managed identities get these" not in readme  # the old claim that MIs get v1 tokens


def test_one_minimum_azd_version():
    required = yaml.safe_load(text("azure.yaml"))["requiredVersions"]["azd"]
    minimum = re.fullmatch(r">=\s*(\d+\.\d+\.\d+)", required).group(1)
    assert f"azd **{minimum} or later**" in text("docs/deploy.md")
    assert set(re.findall(r"azd (\d+\.\d+\.\d+)\+", text("azure.yaml") + text("docs/deploy.md"))) <= {minimum}
