"""The connector definition and the bridge agree: a bounded, deterministic run of a schema-driven
fuzzer (schemathesis) generates requests from connector/apiDefinition.swagger.json — valid ones and
ones that break a constraint — and sends them to the local host over real sockets. It fails on any
5xx, any schema-valid request the bridge refuses, any schema-violating request it accepts, and any
answer the definition does not describe (status, content type, body, headers).

Left out, as the Functions host behaves: the function-key checks (``ignored_auth``,
``missing_required_header``, key parameters not generated — the local host, like ``func start``,
does not enforce keys; tests/test_host_auth*.py cover keys and tokens) and ``unsupported_method``
(a method no function accepts is an empty 404 on Azure, not a 405). Two explained exceptions live in
tests/fuzz_hooks.py (the platform-filled callback URL; two cross-field/stateful 400s).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared.events import SUBSCRIBABLE
from shared.schemas import CALENDLY_URI

ROOT = Path(__file__).resolve().parent.parent
DEFINITION = ROOT / "connector" / "apiDefinition.swagger.json"
SWAGGER = json.loads(DEFINITION.read_text(encoding="utf-8"))
EXAMPLES_PER_OPERATION = 25  # ~1,000 requests over the 12 operations; about 30 s here
EXCLUDED_CHECKS = "ignored_auth,missing_required_header,unsupported_method"


def _st() -> str:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.fail("schemathesis is not installed: scripts/test.sh installs requirements-dev.txt")
    return str(st)


@pytest.mark.slow
def test_a_fuzzer_driven_by_the_connector_definition_finds_no_disagreement(bridge, target, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(f"hooks = {json.dumps(str(ROOT / 'tests' / 'fuzz_hooks.py'))}\n", encoding="utf-8")
    env = {**os.environ, "FUZZ_TARGET_URL": f"{target.url}/flow", "NO_COLOR": "1"}
    run = subprocess.run(
        [_st(), "--config-file", str(config), "run", str(DEFINITION), "--url", f"{bridge.url}/api",
         "--exclude-checks", EXCLUDED_CHECKS, "--generation-with-security-parameters", "false",
         "--max-examples", str(EXAMPLES_PER_OPERATION), "--generation-deterministic",
         "--request-timeout", "15", "--max-failures", "20", "--no-color"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    summary = run.stdout[run.stdout.rfind("SUMMARY"):] if "SUMMARY" in run.stdout else run.stdout[-4000:]
    (tmp_path / "st.log").write_text(run.stdout + run.stderr, encoding="utf-8")
    assert run.returncode == 0, f"the fuzzer found disagreements (all in {tmp_path / 'st.log'}):\n{run.stdout[:12000]}\n{run.stderr[-2000:]}"
    generated = re.search(r"(\d+) generated", summary)
    assert generated and int(generated.group(1)) >= 12 * EXAMPLES_PER_OPERATION // 2, summary
    assert target.received, "no generated subscription reached the local target: the url hook is not applied"


def _trigger_property(name: str) -> list[dict]:
    return [op["parameters"][0]["schema"]["properties"][name]
            for path, item in SWAGGER["paths"].items() if path.startswith("/triggers/")
            for op in [item["post"]] if name in op["parameters"][0]["schema"]["properties"]]


@pytest.mark.parametrize("kind", ["user", "group"])
def test_the_definitions_user_and_group_patterns_are_the_bridges(kind):
    patterns = {p["pattern"] for p in _trigger_property(kind)}
    assert patterns == {f"^({CALENDLY_URI[kind].pattern[1:-1]})?$"}


def test_the_test_event_names_are_the_bridges_event_types():
    prop = SWAGGER["paths"]["/subscriptions/{id}/test"]["post"]["parameters"][1]["schema"]["properties"]["event"]
    assert prop["enum"] == list(SUBSCRIBABLE) and "x-nullable" not in prop


def test_no_content_is_declared_without_a_content_type():
    # Swagger 2.0 inherits a global `produces` even through an empty list, so each operation with a
    # body names its own and the unsubscribe (204, no body) names none.
    assert "produces" not in SWAGGER and "produces" not in SWAGGER["paths"]["/subscriptions/{id}"]["delete"]
    assert all(op.get("produces") == ["application/json"] for item in SWAGGER["paths"].values()
               for method, op in item.items() if method in ("get", "post"))
