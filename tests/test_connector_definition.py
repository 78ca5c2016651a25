"""connector/ on its own: a Swagger 2.0 custom connector that passes the Power Platform validator's
statically checkable rules, whose triggers follow the platform's webhook conventions (a fixed path
per trigger, an internal notification URL, 201 + Location, a DELETE for it, dynamic content in
x-ms-notification-content), and whose notification schemas accept Calendly's own example payloads.
Nothing here runs the bridge.

The validator rules are written out below in our own words (from Microsoft's published rule list,
the connector string guidance and the certification guide). Each rule is one checker that returns
what breaks it; ``test_the_connector_obeys`` runs every checker on the files in the repository, and
``test_each_rule_catches_its_mutation`` breaks a copy of the files in one way per rule and asserts
that exactly that rule's checker (and no other) reports it, so no checker passes vacuously."""
from __future__ import annotations

import copy
import json
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import jsonschema
import pytest
from openapi_spec_validator import validate

from tests.helpers import EXAMPLES
from tests.swagger import to_json_schema

CONNECTOR_DIR = Path(__file__).resolve().parent.parent / "connector"

# Calendly API v2 webhook event names (developer.calendly.com).
CALENDLY_EVENTS = {
    "invitee.created", "invitee.canceled", "invitee_no_show.created", "invitee_no_show.deleted",
    "routing_form_submission.created", "event_type.created", "event_type.updated", "event_type.deleted",
    "meeting_recap.created", "meeting_recap.updated", "meeting_recap.deleted",
    "contact.created", "contact.updated", "contact.deleted",
    "invitee.rescheduled",  # the bridge's own: one event per reschedule (shared/reschedules.py)
}
# The contract with the bridge's POST /api/triggers/{trigger}: one fixed path per trigger.
FAMILY_TRIGGERS = {
    "/triggers/invitee-created": "invitee.created",
    "/triggers/invitee-canceled": "invitee.canceled",
    "/triggers/invitee-rescheduled": "invitee.rescheduled",
    "/triggers/no-show-created": "invitee_no_show.created",
    "/triggers/no-show-deleted": "invitee_no_show.deleted",
    "/triggers/routing-form-submitted": "routing_form_submission.created",
}
EVENT_TRIGGER = "/triggers/event"  # "When a Calendly event occurs": the maker picks the events
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


@dataclass
class Connector:
    swagger: dict
    properties: dict
    icon: bytes


def load() -> Connector:
    return Connector(json.loads((CONNECTOR_DIR / "apiDefinition.swagger.json").read_text("utf-8")),
                     json.loads((CONNECTOR_DIR / "apiProperties.json").read_text("utf-8")),
                     (CONNECTOR_DIR / "icon.png").read_bytes())


CONNECTOR = load()
SWAGGER = CONNECTOR.swagger
PROPERTIES = CONNECTOR.properties["properties"]


# Walking the document ---------------------------------------------------------------------------
def operations(swagger: dict) -> Iterator[tuple[str, str, dict, dict]]:
    for path, item in swagger["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op, item


def triggers(swagger: dict) -> list[tuple[str, str, dict, dict]]:
    return [t for t in operations(swagger) if "x-ms-trigger" in t[2]]


def deref(swagger: dict, schema: dict) -> dict:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = swagger["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def resolve_refs(swagger: dict, schema):
    """Inline #/definitions refs, keeping the x- extensions."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return resolve_refs(swagger, copy.deepcopy(deref(swagger, schema)))
        return {k: resolve_refs(swagger, v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [resolve_refs(swagger, v) for v in schema]
    return schema


def body_schema(op: dict, swagger: dict = SWAGGER) -> dict:
    [param] = [p for p in op.get("parameters", []) if p["in"] == "body"]
    return resolve_refs(swagger, param["schema"])


def is_container(prop: dict) -> bool:
    return prop.get("type") == "object" and "properties" in prop


def all_schemas(swagger: dict) -> Iterator[tuple[str, dict]]:
    """Every schema written in the document (refs are walked where they are defined)."""
    for name, schema in swagger.get("definitions", {}).items():
        yield f"#/definitions/{name}", schema
    for path, method, op, item in operations(swagger):
        for param in op.get("parameters", []):
            if "schema" in param:
                yield f"{method.upper()} {path} body", param["schema"]
        for code, response in op.get("responses", {}).items():
            if "schema" in response:
                yield f"{method.upper()} {path} {code}", response["schema"]
    for path, item in swagger["paths"].items():
        if "schema" in item.get("x-ms-notification-content", {}):
            yield f"{path} notification", item["x-ms-notification-content"]["schema"]


def properties_of(schema: dict, where: str) -> Iterator[tuple[str, str, dict, dict]]:
    """(location, name, property, parent) for every property below ``schema``, refs not followed."""
    if not isinstance(schema, dict):
        return
    for name, prop in (schema.get("properties") or {}).items():
        yield f"{where}.{name}", name, prop, schema
        yield from properties_of(prop, f"{where}.{name}")
    if "items" in schema:
        yield from properties_of(schema["items"], f"{where}[]")


def labels(swagger: dict, schema: dict, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """The dynamic-content labels a maker sees for ``schema``: every leaf and array property, named
    by its x-ms-summary after its ancestors' (Power Automate prefixes a parent's x-ms-summary)."""
    schema = deref(swagger, schema)
    for name, prop in (schema.get("properties") or {}).items():
        prop = deref(swagger, prop)
        chain = prefix + ((prop.get("x-ms-summary") or prop.get("title") or name,) if not is_container(prop)
                          else ((prop["x-ms-summary"],) if prop.get("x-ms-summary") else ()))
        if not is_container(prop):
            yield " ".join(chain)
        yield from labels(swagger, prop, chain)
    if "items" in schema:
        yield from labels(swagger, schema["items"], prefix)


def oid(op: dict) -> str:
    return op.get("operationId", "<no operationId>")


def success_codes(op: dict) -> list[str]:
    return [code for code in op.get("responses", {}) if code.isdigit() and 200 <= int(code) < 300]


def notification_url_fields(op: dict, swagger: dict) -> Iterator[tuple[list[dict], dict, dict]]:
    """(ancestors from the body parameter down, field, body parameter) for each x-ms-notification-url field."""
    for param in op.get("parameters", []):
        if param["in"] != "body":
            continue

        def walk(schema, chain):
            schema = deref(swagger, schema)
            for name, prop in (schema.get("properties") or {}).items():
                if prop.get("x-ms-notification-url"):
                    yield chain + [(schema, name)], prop, param
                yield from walk(prop, chain + [(schema, name)])

        yield from walk(param["schema"], [])


# The rules: each returns a list of violations ------------------------------------------------------
def path_has_no_query_or_fragment(c: Connector) -> list[str]:
    return [path for path in c.swagger["paths"] if "?" in path or "#" in path]


def path_starts_with_slash(c: Connector) -> list[str]:
    return [path for path in c.swagger["paths"] if not path.startswith("/")]


def path_has_no_wildcard(c: Connector) -> list[str]:
    return [path for path in c.swagger["paths"] if "*" in path]


def _segments(path: str) -> list[str]:
    return ["{}" if re.fullmatch(r"\{[^}]+\}", s) else s for s in path.strip("/").split("/")]


def no_duplicate_paths(c: Connector) -> list[str]:
    """Two templates equal but for their parameter names cannot be routed apart."""
    seen: dict[tuple, str] = {}
    out = []
    for path in c.swagger["paths"]:
        key = tuple(_segments(path))
        if key in seen:
            out.append(f"{seen[key]} == {path}")
        seen[key] = path
    return out


def no_partial_duplicate_paths(c: Connector) -> list[str]:
    """A parameter segment must never be able to match another template's static segment."""
    paths = list(c.swagger["paths"])
    out = []
    for i, a in enumerate(paths):
        for b in paths[i + 1:]:
            sa, sb = _segments(a), _segments(b)
            if len(sa) != len(sb):
                continue
            pairs = list(zip(sa, sb))
            if all(x == y or "{}" in (x, y) for x, y in pairs) and any((x == "{}") != (y == "{}") for x, y in pairs):
                out.append(f"{a} ~ {b}")
    return out


def paths_differ_beyond_case(c: Connector) -> list[str]:
    lowered: dict[str, str] = {}
    out = []
    for path in c.swagger["paths"]:
        if path.lower() in lowered:
            out.append(f"{lowered[path.lower()]} ~ {path}")
        lowered[path.lower()] = path
    return out


def path_parameters_are_encoded(c: Connector) -> list[str]:
    return [f"{oid(op)}: {p['name']}" for _, _, op, _ in operations(c.swagger) for p in op.get("parameters", [])
            if p["in"] == "path" and p.get("x-ms-url-encoding") not in ("single", "double")]


def query_parameters_are_not_encoded(c: Connector) -> list[str]:
    return [f"{oid(op)}: {p['name']}" for _, _, op, _ in operations(c.swagger) for p in op.get("parameters", [])
            if p["in"] == "query" and "x-ms-url-encoding" in p]


def path_parameters_are_required(c: Connector) -> list[str]:
    return [f"{oid(op)}: {p['name']}" for _, _, op, _ in operations(c.swagger) for p in op.get("parameters", [])
            if p["in"] == "path" and p.get("required") is not True]


def path_parameters_match_the_template(c: Connector) -> list[str]:
    out = []
    for path, _, op, _ in operations(c.swagger):
        in_template = re.findall(r"\{([^}]+)\}", path)
        declared = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
        if sorted(in_template) != sorted(declared):
            out.append(f"{oid(op)}: template {in_template}, parameters {declared}")
    return out


def _input_fields(c: Connector) -> Iterator[tuple[str, dict, bool]]:
    """(where, field, required) for every parameter and body property an operation sends."""
    for path, _, op, _ in operations(c.swagger):
        for param in op.get("parameters", []):
            if param["in"] != "body":
                yield f"{oid(op)}: {param['name']}", param, bool(param.get("required"))
                continue
            for where, name, prop, parent in properties_of(deref(c.swagger, param["schema"]), oid(op)):
                yield where, prop, name in parent.get("required", [])


def internal_defaults_are_required(c: Connector) -> list[str]:
    """An internal field with a default that is optional is never sent."""
    return [where for where, field, required in _input_fields(c)
            if field.get("x-ms-visibility") == "internal" and "default" in field and not required]


def internal_required_fields_have_a_default(c: Connector) -> list[str]:
    """Nobody can fill in an internal, required field; the notification URL is the platform's to fill."""
    return [where for where, field, required in _input_fields(c)
            if field.get("x-ms-visibility") == "internal" and required and "default" not in field
            and not field.get("x-ms-notification-url")]


SUPPORTED_REQUEST_TYPES = {"application/json"}  # what this connector sends; the platform knows a few more


def operations_with_a_body_consume_a_supported_type(c: Connector) -> list[str]:
    out = []
    for _, _, op, _ in operations(c.swagger):
        if any(p["in"] == "body" for p in op.get("parameters", [])):
            consumes = op.get("consumes", c.swagger.get("consumes", []))
            if not set(consumes) & SUPPORTED_REQUEST_TYPES:
                out.append(f"{oid(op)}: {consumes}")
    return out


def default_response_has_no_schema(c: Connector) -> list[str]:
    return [oid(op) for _, _, op, _ in operations(c.swagger) if "schema" in op.get("responses", {}).get("default", {})]


def at_most_one_response_has_a_schema(c: Connector) -> list[str]:
    """The designer shows one output schema (the default response has its own rule)."""
    return [oid(op) for _, _, op, _ in operations(c.swagger)
            if sum(1 for code, r in op.get("responses", {}).items() if code != "default" and "schema" in r) > 1]


def every_operation_has_a_success_response(c: Connector) -> list[str]:
    return [oid(op) for _, _, op, _ in operations(c.swagger) if not success_codes(op)]


def output_schema_is_where_the_designer_reads_it(c: Connector) -> list[str]:
    """Actions that return content carry their schema on 200 or 201; webhook triggers in
    x-ms-notification-content (a missing extension or success response is a rule of its own)."""
    out = []
    for _, _, op, item in operations(c.swagger):
        if "x-ms-trigger" in op:
            notification = item.get("x-ms-notification-content")
            if notification is not None and "schema" not in notification:
                out.append(f"{oid(op)}: x-ms-notification-content without a schema")
        elif success_codes(op) not in ([], ["204"]) and not any("schema" in op["responses"].get(code, {}) for code in ("200", "201")):
            out.append(f"{oid(op)}: no schema on 200/201")
    return out


def triggers_are_single_or_batch(c: Connector) -> list[str]:
    return [oid(op) for _, _, op, _ in triggers(c.swagger) if op["x-ms-trigger"] not in ("single", "batch")]


def webhook_triggers_have_one_notification_url(c: Connector) -> list[str]:
    return [oid(op) for _, _, op, _ in triggers(c.swagger)
            if len(list(notification_url_fields(op, c.swagger))) != 1]


def notification_url_is_required_all_the_way(c: Connector) -> list[str]:
    out = []
    for _, _, op, _ in triggers(c.swagger):
        for chain, _field, param in notification_url_fields(op, c.swagger):
            if param.get("required") is not True or any(name not in schema.get("required", []) for schema, name in chain):
                out.append(oid(op))
    return out


def notification_url_is_internal(c: Connector) -> list[str]:
    out = []
    for _, _, op, _ in triggers(c.swagger):
        for chain, field, param in notification_url_fields(op, c.swagger):
            visibilities = [param.get("x-ms-visibility"), deref(c.swagger, param["schema"]).get("x-ms-visibility")]
            visibilities += [schema["properties"][name].get("x-ms-visibility") for schema, name in chain]
            if "internal" not in visibilities:
                out.append(oid(op))
    return out


def notification_url_is_a_string(c: Connector) -> list[str]:
    return [oid(op) for _, _, op, _ in triggers(c.swagger)
            for _chain, field, _param in notification_url_fields(op, c.swagger) if field.get("type") != "string"]


def notification_url_only_in_request_bodies(c: Connector) -> list[str]:
    """The marker belongs in a request body; anywhere else (responses, notification content) is wrong."""
    allowed = {id(field) for _, _, op, _ in operations(c.swagger) for _c, field, _p in notification_url_fields(op, c.swagger)}
    return [where for where, schema in all_schemas(c.swagger) for where, _n, prop, _p in properties_of(schema, where)
            if prop.get("x-ms-notification-url") and id(prop) not in allowed]


def webhook_triggers_describe_their_notification(c: Connector) -> list[str]:
    return [oid(op) for _, _, op, item in triggers(c.swagger) if "x-ms-notification-content" not in item]


def webhook_triggers_do_not_poll(c: Connector) -> list[str]:
    return [oid(op) for _, _, op, _ in triggers(c.swagger) if "x-ms-notification" in op]


def webhook_subscribe_returns_a_location_to_delete(c: Connector) -> list[str]:
    """The platform reads Location from the 201 and DELETEs it later: an internal, described DELETE."""
    out = [oid(op) for _, _, op, _ in triggers(c.swagger)
           if "Location" not in op.get("responses", {}).get("201", {}).get("headers", {})]
    deletes = [op for _, method, op, _ in operations(c.swagger) if method == "delete"]
    if not any(op.get("x-ms-visibility") == "internal" and op.get("description") for op in deletes):
        out.append("no internal, described DELETE operation")
    return out


def operation_ids_are_present(c: Connector) -> list[str]:
    return [f"{method.upper()} {path}" for path, method, op, _ in operations(c.swagger) if not op.get("operationId")]


def operation_ids_are_unique(c: Connector) -> list[str]:
    ids = [op["operationId"] for _, _, op, _ in operations(c.swagger) if op.get("operationId")]
    return sorted({i for i in ids if ids.count(i) > 1})


def operation_ids_are_sanitized(c: Connector) -> list[str]:
    """Alphanumeric only (the validator compares with its sanitised form); PascalCase by guidance."""
    return [oid(op) for _, _, op, _ in operations(c.swagger)
            if op.get("operationId") and not re.fullmatch(r"[A-Z][A-Za-z0-9]*", op["operationId"])]


OPERATION_ID_MAX = 64  # our own cap: the validator's number is unpublished, certified ids reach 69


def operation_ids_are_short(c: Connector) -> list[str]:
    return [oid(op) for _, _, op, _ in operations(c.swagger) if len(op.get("operationId", "")) > OPERATION_ID_MAX]


def summaries_are_short(c: Connector) -> list[str]:
    return [oid(op) for _, _, op, _ in operations(c.swagger) if len(op.get("summary", "")) > 80]


def summaries_use_no_restricted_characters(c: Connector) -> list[str]:
    """No slash; ends with a letter or digit (no punctuation or space at the end)."""
    return [oid(op) for _, _, op, _ in operations(c.swagger)
            if "/" in op.get("summary", "") or not re.search(r"[A-Za-z0-9]$", op.get("summary", "x"))]


def operations_have_a_summary_and_a_different_description(c: Connector) -> list[str]:
    return [oid(op) for _, _, op, _ in operations(c.swagger)
            if not op.get("summary") or not op.get("description") or op["summary"] == op["description"]
            or not op["description"].rstrip().endswith((".", "!", "?", ")"))]


def parameters_are_labelled(c: Connector) -> list[str]:
    return [f"{oid(op)}: {p['name']}" for _, _, op, _ in operations(c.swagger) for p in op.get("parameters", [])
            if not p.get("x-ms-summary") or len(p["x-ms-summary"]) > 80 or not p.get("description")
            or p["description"] == p["x-ms-summary"]]


def properties_are_labelled(c: Connector) -> list[str]:
    """Every property has a description; every property a maker sees as a value (leaves, arrays) also
    has an x-ms-summary. Objects that only group other properties carry a description alone, as
    Calendly's certified connector does, because the designer prefixes a parent's x-ms-summary to
    every child's label. A property that is only a $ref is described by the definition it names."""
    out = []
    for where, schema in all_schemas(c.swagger):
        for location, _name, prop, _parent in properties_of(schema, where):
            if "$ref" in prop:
                if not deref(c.swagger, prop).get("description"):
                    out.append(f"{location}: {prop['$ref']} has no description")
                continue
            if not prop.get("description"):
                out.append(f"{location}: no description")
            if not is_container(prop) and (not prop.get("x-ms-summary") or len(prop["x-ms-summary"]) > 80
                                           or prop["x-ms-summary"] == prop.get("description")):
                out.append(f"{location}: no x-ms-summary (or one equal to the description)")
    return out


def dynamic_content_labels_are_unique(c: Connector) -> list[str]:
    """Within one trigger's notification and one action's output, no two values share a label."""
    out = []
    for path, method, op, item in operations(c.swagger):
        if "x-ms-trigger" in op:
            schema = item.get("x-ms-notification-content", {}).get("schema")
        else:
            schema = next((op["responses"][code]["schema"] for code in success_codes(op) if "schema" in op["responses"][code]), None)
        if schema is None:
            continue
        seen = list(labels(c.swagger, schema))
        out += [f"{oid(op)}: {label!r}" for label in sorted({s for s in seen if seen.count(s) > 1})]
    return out


def objects_in(node, where: str = "#") -> Iterator[tuple[dict, str]]:
    """Every JSON object in ``node`` with its JSON pointer, depth first."""
    if isinstance(node, dict):
        yield node, where
        for key, value in node.items():
            yield from objects_in(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from objects_in(value, f"{where}/{i}")


def refs_stand_alone(c: Connector) -> list[str]:
    """Beside a $ref nothing else may be written (the validator ignores or refuses it)."""
    return [where for node, where in objects_in(c.swagger) if "$ref" in node and len(node) > 1]


def enum_display_names_match_the_enum(c: Connector) -> list[str]:
    out = []
    for node, where in objects_in(c.swagger):
        if "x-ms-enum-values" in node:
            values = [v.get("value") for v in node["x-ms-enum-values"]]
            if sorted(values) != sorted(node.get("enum", [])) or len(set(values)) != len(values) \
                    or not all(v.get("displayName") for v in node["x-ms-enum-values"]):
                out.append(where)
    return out


def host_is_a_bare_host_name(c: Connector) -> list[str]:
    host = c.swagger.get("host")
    return [] if host is None or re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", host) else [host]


def base_path_starts_with_slash(c: Connector) -> list[str]:
    base = c.swagger.get("basePath")
    return [] if base is None or base.startswith("/") else [base]


PLATFORM_PRODUCTS = ("Power Automate", "Power Apps", "Power Platform", "Logic Apps", "Microsoft Flow")


def connector_title_and_description_follow_the_guidance(c: Connector) -> list[str]:
    """Title up to 30 characters; neither it nor the description says 'API' or names a Power Platform product."""
    info = c.swagger["info"]
    out = [] if len(info["title"]) <= 30 else ["title longer than 30 characters"]
    for field in ("title", "description"):
        text = info.get(field, "")
        if re.search(r"\bAPI\b", text) or any(p.lower() in text.lower() for p in PLATFORM_PRODUCTS):
            out.append(f"info.{field}: {text!r}")
    return out


def icon_brand_colour_is_set(c: Connector) -> list[str]:
    colour = c.properties["properties"].get("iconBrandColor", "")
    if not re.fullmatch(r"#[0-9A-Fa-f]{6}", colour) or colour.lower() in ("#007ee5", "#ffffff"):
        return [colour]
    return []


def capabilities_are_listed(c: Connector) -> list[str]:
    caps = c.properties["properties"].get("capabilities")
    ok = isinstance(caps, list) and caps and all(isinstance(x, str) and x for x in caps)
    return [] if ok else [repr(caps)]


def publisher_and_stack_owner_are_named(c: Connector) -> list[str]:
    props = c.properties["properties"]
    return [key for key in ("publisher", "stackOwner")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 .&-]*", props.get(key, "") or "")
            or props[key].strip().lower() in ("your organization", "your organisation", "contoso")]


CONNECTION_PARAMETER_TYPES = {"string", "securestring", "int", "bool", "oauthSetting", "gatewaySetting"}


def connection_parameters_are_well_formed(c: Connector) -> list[str]:
    params = c.properties["properties"].get("connectionParameters", {})
    return [name for name, spec in params.items()
            if not re.fullmatch(r"[0-9A-Za-z_]+(:[0-9A-Za-z_]+)?", name) or spec.get("type") not in CONNECTION_PARAMETER_TYPES
            or not spec.get("uiDefinition", {}).get("displayName")]


def the_api_key_is_a_hidden_required_secret(c: Connector) -> list[str]:
    definitions = c.swagger.get("securityDefinitions", {})
    if definitions != {"api_key": {"type": "apiKey", "in": "header", "name": "x-functions-key"}} \
            or c.swagger.get("security") != [{"api_key": []}]:
        return ["securityDefinitions/security are not the x-functions-key header"]
    key = c.properties["properties"].get("connectionParameters", {}).get("api_key", {})
    constraints = key.get("uiDefinition", {}).get("constraints", {})
    ok = key.get("type") == "securestring" and constraints.get("clearText") is False and constraints.get("required") == "true"
    return [] if ok else ["api_key is not a required securestring hidden while typed"]


def the_host_comes_from_the_connection(c: Connector) -> list[str]:
    """dynamichosturl: https + the bridgeHost connection parameter + the definition's basePath."""
    props = c.properties["properties"]
    host = props.get("connectionParameters", {}).get("bridgeHost", {})
    out = [] if host.get("uiDefinition", {}).get("constraints", {}).get("required") == "true" \
        else ["bridgeHost is not a required connection parameter"]
    templates = [p for p in props.get("policyTemplateInstances", []) if p.get("templateId", "").lower() == "dynamichosturl"]
    expected = "https://@connectionParameters('bridgeHost')/" + c.swagger.get("basePath", "").lstrip("/")
    if [p.get("parameters", {}).get("x-ms-apimTemplateParameter.urlTemplate") for p in templates] != [expected]:
        out.append(f"want one dynamichosturl template {expected!r}")
    if any("x-ms-apimTemplate-operationName" in p.get("parameters", {}) for p in templates):
        out.append("the template must cover every operation")
    return out


def png_size_and_corner(data: bytes) -> tuple[int, int, tuple[int, ...]]:
    """Width, height and the top-left pixel of an 8-bit RGB/RGBA PNG (the first pixel of the first
    row is the same whatever the row's filter, since every predictor of it is 0)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour_type = header[:4]
    assert depth == 8 and colour_type in (2, 6), "8-bit RGB or RGBA"
    channels = 3 if colour_type == 2 else 4
    first = zlib.decompressobj().decompress(idat, 1 + channels)
    return width, height, tuple(first[1:1 + channels])


def the_icon_is_a_square_png_on_the_brand_colour(c: Connector) -> list[str]:
    """icon.png: PNG under 1 MB, square, about 230 px, opaque background in iconBrandColor."""
    try:
        width, height, corner = png_size_and_corner(c.icon)
    except (AssertionError, struct.error, zlib.error, TypeError) as exc:
        return [f"icon.png: {exc}"]
    colour = c.properties["properties"].get("iconBrandColor", "")
    digits = re.search(r"[0-9A-Fa-f]{6}", colour)  # the colour's own format is the iconBrandColor rule
    brand = tuple(int(digits.group(0)[i:i + 2], 16) for i in (0, 2, 4)) if digits else None
    out = [] if len(c.icon) < 1024 * 1024 and width == height and 160 <= width <= 512 else [f"icon {width}x{height}"]
    if corner[:3] != brand or (len(corner) == 4 and corner[3] != 255):
        out.append(f"icon background {corner} is not the opaque brand colour {colour}")
    return out


RULES: dict[str, Callable[[Connector], list[str]]] = {
    "OperationPathMayNotContainQueryOrFragment": path_has_no_query_or_fragment,
    "OperationPathMustStartWithSlash": path_starts_with_slash,
    "OperationPathContainsUnsupportedCharacters": path_has_no_wildcard,
    "DuplicateOperationPath": no_duplicate_paths,
    "PartialDuplicateOperationPath": no_partial_duplicate_paths,
    "PathRedefined": paths_differ_beyond_case,
    "PathParameterMissingEncoding": path_parameters_are_encoded,
    "QueryParameterEncodingNotSupported": query_parameters_are_not_encoded,
    "PathParameterMustBeRequired": path_parameters_are_required,
    "OperationMissingPathParameter/PathParameterNotDefinedInTemplate": path_parameters_match_the_template,
    "InternalPropertyWithDefaultOptional/PropertyMustBeRequired": internal_defaults_are_required,
    "x-ms-visibility: internal and required needs a default": internal_required_fields_have_a_default,
    "ConsumesMissing/MimeTypeNotSupported": operations_with_a_body_consume_a_supported_type,
    "DefaultResponseHasSchema": default_response_has_no_schema,
    "OperationHasManyResponsesWithSchema": at_most_one_response_has_a_schema,
    "OperationMustHaveResponse/OperationShouldHaveSuccessfulResponse": every_operation_has_a_success_response,
    "SchemaDefinitionSetIncorrectly": output_schema_is_where_the_designer_reads_it,
    "x-ms-trigger is single or batch": triggers_are_single_or_batch,
    "WebhookOperationsMissingNotificationUrlProperty": webhook_triggers_have_one_notification_url,
    "NotificationUrlNotRequired": notification_url_is_required_all_the_way,
    "NotificationUrlNotInternal": notification_url_is_internal,
    "NotificationUrlNotString": notification_url_is_a_string,
    "NotificationUrlNotAllowedInThisPosition": notification_url_only_in_request_bodies,
    "OperationMustHaveNotificationContentExtension": webhook_triggers_describe_their_notification,
    "NotificationExtensionNotSupportedInWebhookOperation": webhook_triggers_do_not_poll,
    "webhook runtime: 201 + Location, an internal described DELETE": webhook_subscribe_returns_a_location_to_delete,
    "OperationIdRequired": operation_ids_are_present,
    "OperationIdNotUnique": operation_ids_are_unique,
    "OperationIdSanitized": operation_ids_are_sanitized,
    "OperationIdTooLong": operation_ids_are_short,
    "OperationSummaryTooLong": summaries_are_short,
    "RestrictedCharactersInSummary": summaries_use_no_restricted_characters,
    "summary and a different, punctuated description on each operation": operations_have_a_summary_and_a_different_description,
    "x-ms-summary and description on every parameter": parameters_are_labelled,
    "description (and x-ms-summary on values) on every property": properties_are_labelled,
    "unique dynamic-content labels": dynamic_content_labels_are_unique,
    "AdditionalPropertyNotAllowedAdjacentToRef": refs_stand_alone,
    "InvalidEnumValuesExtensionValue/MissingEnumValuesDisplayName": enum_display_names_match_the_enum,
    "HostNameNotValid": host_is_a_bare_host_name,
    "BasePathNotValid": base_path_starts_with_slash,
    "connector title and description guidance": connector_title_and_description_follow_the_guidance,
    "iconBrandColor": icon_brand_colour_is_set,
    "capabilities": capabilities_are_listed,
    "publisher and stackOwner": publisher_and_stack_owner_are_named,
    "connection parameter names and types": connection_parameters_are_well_formed,
    "API key connection": the_api_key_is_a_hidden_required_secret,
    "dynamichosturl from the bridgeHost connection parameter": the_host_comes_from_the_connection,
    "icon": the_icon_is_a_square_png_on_the_brand_colour,
}


# One mutation per rule: each breaks a copy of the files in exactly one way --------------------------
def _op(c: Connector, operation_id: str) -> dict:
    [op] = [op for _, _, op, _ in operations(c.swagger) if op.get("operationId") == operation_id]
    return op


def _body(c: Connector, operation_id: str) -> dict:
    [param] = [p for p in _op(c, operation_id)["parameters"] if p["in"] == "body"]
    return param["schema"]


def _rename_path(c: Connector, old: str, new: str) -> None:
    c.swagger["paths"] = {(new if k == old else k): v for k, v in c.swagger["paths"].items()}


def _clone_path(c: Connector, old: str, new: str, rename: dict[str, str] | None = None) -> None:
    item = copy.deepcopy(c.swagger["paths"][old])
    for method, op in item.items():
        if method in METHODS:
            op["operationId"] += "Copy"
            for param in op.get("parameters", []):
                param["name"] = (rename or {}).get(param["name"], param["name"])
    c.swagger["paths"][new] = item


def _set(mapping: dict, key: str, value) -> None:
    mapping[key] = value


MUTATIONS: dict[str, Callable[[Connector], None]] = {
    "OperationPathMayNotContainQueryOrFragment": lambda c: _rename_path(c, "/triggers/event", "/triggers?kind=event"),
    "OperationPathMustStartWithSlash": lambda c: _rename_path(c, "/triggers/event", "triggers/event"),
    "OperationPathContainsUnsupportedCharacters": lambda c: _rename_path(c, "/triggers/event", "/triggers/*"),
    "DuplicateOperationPath": lambda c: _clone_path(c, "/subscriptions/{id}", "/subscriptions/{subscription}",
                                                    {"id": "subscription"}),
    "PartialDuplicateOperationPath": lambda c: _clone_path(c, "/triggers/event", "/subscriptions/latest"),
    "PathRedefined": lambda c: _clone_path(c, "/triggers/event", "/Triggers/Event"),
    "PathParameterMissingEncoding": lambda c: _op(c, "GetSubscription")["parameters"][0].pop("x-ms-url-encoding"),
    "QueryParameterEncodingNotSupported": lambda c: _set(_op(c, "ListSubscriptions")["parameters"][0], "x-ms-url-encoding", "single"),
    "PathParameterMustBeRequired": lambda c: _set(_op(c, "GetSubscription")["parameters"][0], "required", False),
    "OperationMissingPathParameter/PathParameterNotDefinedInTemplate":
        lambda c: _set(_op(c, "GetSubscription")["parameters"][0], "name", "subscription_id"),
    "InternalPropertyWithDefaultOptional/PropertyMustBeRequired":
        lambda c: _body(c, "WhenRoutingFormSubmitted")["required"].remove("scope"),
    "x-ms-visibility: internal and required needs a default":
        lambda c: _body(c, "WhenRoutingFormSubmitted")["properties"]["scope"].pop("default"),
    "ConsumesMissing/MimeTypeNotSupported": lambda c: _set(_op(c, "SendTestEvent"), "consumes", ["application/x-unknown"]),
    "DefaultResponseHasSchema": lambda c: _set(_op(c, "GetSubscription")["responses"]["default"], "schema", {"type": "object"}),
    "OperationHasManyResponsesWithSchema":
        lambda c: _set(_op(c, "SendTestEvent")["responses"]["202"], "schema", {"$ref": "#/definitions/Delivery"}),
    "OperationMustHaveResponse/OperationShouldHaveSuccessfulResponse":
        lambda c: _set(_op(c, "DeleteSubscription"), "responses", {"default": {"description": "Error."}}),
    "SchemaDefinitionSetIncorrectly": lambda c: _op(c, "GetSubscription")["responses"]["200"].pop("schema"),
    "x-ms-trigger is single or batch": lambda c: _set(_op(c, "WhenCalendlyEventOccurs"), "x-ms-trigger", "always"),
    "WebhookOperationsMissingNotificationUrlProperty": lambda c: (
        _body(c, "WhenCalendlyEventOccurs")["properties"].pop("url"), _body(c, "WhenCalendlyEventOccurs")["required"].remove("url")),
    "NotificationUrlNotRequired": lambda c: _body(c, "WhenCalendlyEventOccurs")["required"].remove("url"),
    "NotificationUrlNotInternal": lambda c: _body(c, "WhenCalendlyEventOccurs")["properties"]["url"].pop("x-ms-visibility"),
    "NotificationUrlNotString": lambda c: _set(_body(c, "WhenCalendlyEventOccurs")["properties"]["url"], "type", "integer"),
    "NotificationUrlNotAllowedInThisPosition":
        lambda c: _set(c.swagger["definitions"]["Subscription"]["properties"]["target"]["properties"]["url"],
                       "x-ms-notification-url", True),
    "OperationMustHaveNotificationContentExtension": lambda c: c.swagger["paths"]["/triggers/event"].pop("x-ms-notification-content"),
    "NotificationExtensionNotSupportedInWebhookOperation":
        lambda c: _set(_op(c, "WhenCalendlyEventOccurs"), "x-ms-notification", {"operationId": "ListSubscriptions"}),
    "webhook runtime: 201 + Location, an internal described DELETE":
        lambda c: _op(c, "WhenInviteeCreated")["responses"]["201"]["headers"].pop("Location"),
    "OperationIdRequired": lambda c: _op(c, "ListSubscriptions").pop("operationId"),
    "OperationIdNotUnique": lambda c: _set(_op(c, "ListDeliveries"), "operationId", "ListSubscriptions"),
    "OperationIdSanitized": lambda c: _set(_op(c, "ListDeliveries"), "operationId", "List_Deliveries"),
    "OperationIdTooLong": lambda c: _set(_op(c, "ListDeliveries"), "operationId", "ListDeliveries" + "OfOneSubscription" * 4),
    "OperationSummaryTooLong": lambda c: _set(_op(c, "ListDeliveries"), "summary", "List a subscription's deliveries" + " again" * 10),
    "RestrictedCharactersInSummary": lambda c: _set(_op(c, "ListDeliveries"), "summary", "List deliveries / attempts"),
    "summary and a different, punctuated description on each operation":
        lambda c: _set(_op(c, "ListDeliveries"), "description", _op(c, "ListDeliveries")["summary"]),
    "x-ms-summary and description on every parameter": lambda c: _op(c, "ListDeliveries")["parameters"][3].pop("description"),
    "description (and x-ms-summary on values) on every property":
        lambda c: c.swagger["definitions"]["InviteePayload"]["properties"]["scheduled_event"]["properties"]["location"]
        ["properties"]["join_url"].pop("description"),
    "unique dynamic-content labels":
        lambda c: _set(c.swagger["definitions"]["InviteePayload"]["properties"]["scheduled_event"]["properties"]["name"],
                       "x-ms-summary", "Invitee name"),
    "AdditionalPropertyNotAllowedAdjacentToRef":
        lambda c: _set(c.swagger["definitions"]["CalendlyEvent"]["properties"]["payload"], "x-ms-summary", "Payload"),
    "InvalidEnumValuesExtensionValue/MissingEnumValuesDisplayName":
        lambda c: _set(_body(c, "WhenInviteeCreated")["properties"]["scope"]["x-ms-enum-values"][0], "value", "everyone"),
    "HostNameNotValid": lambda c: _set(c.swagger, "host", "https://bridge.example.com/api"),
    "BasePathNotValid": lambda c: _set(c.swagger, "basePath", "api"),
    "connector title and description guidance": lambda c: _set(c.swagger["info"], "title", "Calendly Trigger Bridge API"),
    "iconBrandColor": lambda c: _set(c.properties["properties"], "iconBrandColor", "0A4D68"),  # no '#'; the icon still matches
    "capabilities": lambda c: _set(c.properties["properties"], "capabilities", []),
    "publisher and stackOwner": lambda c: _set(c.properties["properties"], "stackOwner", "Your organization"),
    "connection parameter names and types":
        lambda c: _set(c.properties["properties"]["connectionParameters"]["bridgeHost"], "type", "url"),
    "API key connection":
        lambda c: _set(c.properties["properties"]["connectionParameters"]["api_key"]["uiDefinition"]["constraints"], "clearText", True),
    "dynamichosturl from the bridgeHost connection parameter":
        lambda c: _set(c.properties["properties"]["policyTemplateInstances"][0]["parameters"],
                       "x-ms-apimTemplateParameter.urlTemplate", "https://@connectionParameters('bridgeHost')"),
    "icon": lambda c: _set(c.properties["properties"], "iconBrandColor", "#123456"),
}


def failing_rules(connector: Connector) -> dict[str, list[str]]:
    return {name: found for name, check in RULES.items() if (found := check(connector))}


@pytest.mark.parametrize("rule", list(RULES))
def test_the_connector_obeys(rule):
    assert RULES[rule](CONNECTOR) == []


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_catches_its_mutation(rule):
    mutated = copy.deepcopy(CONNECTOR)
    MUTATIONS[rule](mutated)
    assert set(failing_rules(mutated)) == {rule}


def test_every_rule_has_a_mutation():
    assert set(MUTATIONS) == set(RULES)


# The document -----------------------------------------------------------------------------------
def test_definition_is_valid_swagger_2_served_under_api():
    validate(SWAGGER)
    assert SWAGGER["swagger"] == "2.0" and SWAGGER["schemes"] == ["https"] and SWAGGER["basePath"] == "/api"
    # Every operation goes to the connection's bridgeHost (dynamichosturl); the swagger host is a
    # placeholder under .invalid (RFC 2606), so nothing could ever reach a real host by mistake.
    assert SWAGGER["host"].endswith(".invalid")


def test_the_connection_asks_for_the_bridge_host_and_a_function_key():
    params = PROPERTIES["connectionParameters"]
    assert set(params) == {"bridgeHost", "api_key"}
    assert params["bridgeHost"]["uiDefinition"]["constraints"]["tabIndex"] < params["api_key"]["uiDefinition"]["constraints"]["tabIndex"]
    assert "BRIDGE_PUBLIC_URL" in params["bridgeHost"]["uiDefinition"]["tooltip"]


def test_errors_are_documented_on_the_default_responses():
    for _, _, op, _ in operations(SWAGGER):
        assert '{"error": {"code", "message"}}' in op["responses"]["default"]["description"], oid(op)


# Triggers -------------------------------------------------------------------------------------
def test_each_trigger_has_its_own_fixed_path_under_triggers():
    paths = {path for path, method, op, _ in triggers(SWAGGER)}
    assert paths == set(FAMILY_TRIGGERS) | {EVENT_TRIGGER}
    assert all(method == "post" and op["x-ms-trigger"] == "single" for _, method, op, _ in triggers(SWAGGER))


def test_family_triggers_send_no_events_the_path_names_them():
    for path, _, op, _ in triggers(SWAGGER):
        if path in FAMILY_TRIGGERS:
            assert "events" not in body_schema(op)["properties"], path


def test_the_event_trigger_lets_the_maker_pick_calendlys_events_from_a_dropdown():
    [op] = [op for path, _, op, _ in triggers(SWAGGER) if path == EVENT_TRIGGER]
    assert op["summary"] == "When a Calendly event occurs"
    schema = body_schema(op)
    events = schema["properties"]["events"]
    assert "events" in schema["required"] and events.get("x-ms-visibility") != "internal"
    assert events["type"] == "array" and set(events["items"]["enum"]) == CALENDLY_EVENTS
    # Calendly's certified connector offers the invitee events the same way (an enum of items).
    assert {"invitee.created", "invitee.canceled"} <= set(events["items"]["enum"])


def test_scope_is_always_sent_and_visible_where_the_maker_chooses():
    for path, _, op, _ in triggers(SWAGGER):
        schema = body_schema(op)
        scope = schema["properties"]["scope"]
        assert "scope" in schema["required"], f"{path}: scope must be sent; the bridge answers 400 without it"
        if path == "/triggers/routing-form-submitted":
            # Calendly: routing form hooks exist in organization scope only.
            assert scope["enum"] == ["organization"] and scope["default"] == "organization"
            # (and the Calendly account, like every trigger: shared.accounts)
            assert scope["x-ms-visibility"] == "internal" and set(schema["properties"]) == {"url", "scope", "account"}
        else:
            assert set(scope["enum"]) == {"organization", "user", "group"} and scope["default"] == "user"
            assert scope.get("x-ms-visibility") not in ("internal", "advanced")
            for name in ("user", "group"):
                assert schema["properties"][name]["x-ms-visibility"] == "advanced" and name not in schema["required"]


def test_subscribe_answers_only_201_with_the_location_the_platform_deletes():
    for _, _, op, _ in triggers(SWAGGER):
        assert success_codes(op) == ["201"], "a repeated subscribe answers 201 too, with the same Location"
        created = op["responses"]["201"]
        assert "Location" in created["headers"] and created["schema"]["$ref"] == "#/definitions/Subscription"
    unsubscribe = SWAGGER["paths"]["/subscriptions/{id}"]["delete"]
    assert unsubscribe["x-ms-visibility"] == "internal" and success_codes(unsubscribe) == ["204"]
    # The bridge's Location is <BRIDGE_PUBLIC_URL>/api/subscriptions/{id}; with bridgeHost = the host
    # of BRIDGE_PUBLIC_URL that is this DELETE, on the connection's host.
    template = PROPERTIES["policyTemplateInstances"][0]["parameters"]["x-ms-apimTemplateParameter.urlTemplate"]
    location = "https://func-abc.azurewebsites.net/api/subscriptions/0f8c2c1e"
    assert re.fullmatch(re.escape(template.replace("@connectionParameters('bridgeHost')", "func-abc.azurewebsites.net"))
                        + "/subscriptions/[^/?]+", location)


def test_every_event_named_anywhere_is_one_of_calendlys():
    named = set(FAMILY_TRIGGERS.values())

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("enum", "default") and isinstance(value, list):
                    named.update(v for v in value if isinstance(v, str) and "." in v)
                elif key == "value" and isinstance(value, str) and "." in value:
                    named.add(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SWAGGER)
    assert named <= CALENDLY_EVENTS, named - CALENDLY_EVENTS


# Actions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path, operation_id", [
    ("get", "/subscriptions", "ListSubscriptions"),
    ("get", "/subscriptions/{id}", "GetSubscription"),
    ("get", "/subscriptions/{id}/deliveries", "ListDeliveries"),
    ("post", "/deliveries/{delivery_id}/replay", "ReplayDelivery"),
    ("post", "/subscriptions/{id}/test", "SendTestEvent"),
])
def test_management_actions_map_to_the_bridge_routes(method, path, operation_id):
    op = SWAGGER["paths"][path][method]
    assert oid(op) == operation_id and op.get("x-ms-visibility") != "internal"


# Dynamic content ------------------------------------------------------------------------------
def notification_schema(path: str) -> dict:
    return resolve_refs(SWAGGER, SWAGGER["paths"][path]["x-ms-notification-content"]["schema"])




def test_makers_get_dynamic_content_for_the_envelope_and_the_invitee():
    for path in [*FAMILY_TRIGGERS, EVENT_TRIGGER]:
        assert {"event", "created_at", "created_by", "payload"} <= set(notification_schema(path)["properties"])
    no_show = notification_schema("/triggers/no-show-created")["properties"]["payload"]["properties"]
    assert {"name", "email", "scheduled_event"} <= set(no_show) and {"uri", "created_at"} <= set(no_show["no_show"]["properties"])
    for path in ("/triggers/invitee-canceled", EVENT_TRIGGER):
        invitee = notification_schema(path)["properties"]["payload"]["properties"]
        for field in ("name", "email", "first_name", "last_name", "status", "timezone", "questions_and_answers",
                      "tracking", "cancel_url", "reschedule_url", "rescheduled", "cancellation", "scheduled_event"):
            assert field in invitee, field
            assert invitee[field].get("x-ms-summary") or invitee[field].get("properties"), f"{field} has no label"
        assert {"canceled_by", "reason", "canceler_type"} <= set(invitee["cancellation"]["properties"])
        assert {"name", "start_time", "end_time", "location"} <= set(invitee["scheduled_event"]["properties"])
        assert {"question", "answer"} <= set(invitee["questions_and_answers"]["items"]["properties"])




def _envelope(event: str) -> dict:
    if event == "invitee.rescheduled":  # the bridge's own, made of Calendly's two halves
        from shared.reschedules import compose_pair

        return json.loads(compose_pair({"created": _envelope("invitee.created"), "canceled": _envelope("invitee.canceled")}))
    return {"event": event, "created_at": "2020-11-23T17:51:19.000000Z",
            "created_by": "https://api.calendly.com/users/AAAAAAAAAAAAAAAA", "payload": EXAMPLES[event]}


@pytest.mark.parametrize("path, event", sorted(FAMILY_TRIGGERS.items()))
def test_notification_schema_accepts_calendlys_payload(path, event):
    jsonschema.validate(_envelope(event), to_json_schema(notification_schema(path)))


@pytest.mark.parametrize("event", sorted(EXAMPLES))
def test_the_event_triggers_notification_schema_accepts_every_familys_payload(event):
    jsonschema.validate(_envelope(event), to_json_schema(notification_schema(EVENT_TRIGGER)))
