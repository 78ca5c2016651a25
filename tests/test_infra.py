"""infra/: the Bicep parses (pycep, checkov's own parser), passes checkov's Bicep scan
(documented skips only), and every setting the code reads is in main.bicep, the sample and the README."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from pycep import BicepParser

from shared.settings import SETTINGS
from tests.conftest import ROOT

INFRA = ROOT / "infra"
BICEP = sorted(INFRA.rglob("*.bicep"))
LOCAL_ONLY = {"CALENDLY_PAT", "BRIDGE_SQLITE_PATH", "SERVICEBUS_CONNECTION", "AzureWebJobsStorage",
              "AzureWebJobsStorage__tableServiceUri", "AzureWebJobsStorage__queueServiceUri", "BRIDGE_LOG_LEVEL"}
# Read by the code but not app settings: WSGI keys, the platform's own, and the sandbox tool's options.
NOT_SETTINGS = {"QUERY_STRING", "PATH_INFO", "CONTENT_LENGTH", "REQUEST_METHOD", "CONTENT_TYPE", "HTTP_HOST",
                "HTTP_AUTHORIZATION", "WEBSITE_HOSTNAME", "SANDBOX_PAT", "SANDBOX_URL"}


def parse(path: Path) -> dict:
    return BicepParser().parse(file_path=path)


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


def test_checkov_bicep_scan_passes_with_documented_skips_only():
    done = subprocess.run(["bash", "scripts/checkov.sh"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    report = json.loads(done.stdout)
    report = report[0] if isinstance(report, list) else report
    summary = report["summary"]
    assert summary["passed"] > 10 and summary["resource_count"] > 10, summary
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0, [c["check_id"] for c in report["results"]["failed_checks"]]
    config = (INFRA / ".checkov.yaml").read_text()
    for line in config.splitlines():
        if line.strip().startswith("- CKV"):
            assert "#" in line, f"skip without a reason: {line.strip()}"


def _settings_read_by_code() -> set[str]:
    names = set()
    for path in [ROOT / "function_app.py", *(ROOT / "shared").rglob("*.py")]:
        text = path.read_text("utf-8")
        names |= set(re.findall(r"(?:env|environ)(?:\.get\(|\[|\.setdefault\()\s*\"([A-Za-z_]+)\"", text))
        names |= set(re.findall(r"_(?:int|flag|base_url)\(env, \"([A-Z_]+)\"", text))
    return names - NOT_SETTINGS


def test_every_setting_the_code_reads_is_registered():
    read = _settings_read_by_code()
    assert read, "the scan found nothing: it is broken"
    assert read <= set(SETTINGS), f"unregistered settings: {read - set(SETTINGS)}"


def test_every_setting_is_in_bicep_the_sample_and_the_readme():
    bicep = (INFRA / "main.bicep").read_text() + (INFRA / "app" / "function.bicep").read_text()
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    readme = (ROOT / "README.md").read_text()
    for name in SETTINGS:
        # The identity-based storage settings are Azure's alternative to the sample's Azurite
        # connection string; the Functions host must not see both.
        assert name in sample or name.startswith("AzureWebJobsStorage__"), f"{name} missing from local.settings.sample.json"
        assert f"`{name}`" in readme, f"{name} missing from the README's settings table"
        if name in LOCAL_ONLY:
            assert name in bicep, f"{name} should be named in main.bicep's comment of local-only settings"
        else:
            assert re.search(rf"^\s*{re.escape(name)}:", bicep, re.M), f"{name} is not set as an app setting in Bicep"
