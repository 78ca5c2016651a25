"""The project's Calendly contract (``calendly_v2.json`` beside this file) and the helpers tests use
to check requests, responses and webhook bodies against it.

The contract is an OpenAPI 3.1 document, so every schema in it is JSON Schema 2020-12; ``$ref``s
resolve inside the document (nothing outside the repository is read).

    from tests.contracts import calendly as contract
    contract.check(contract.response_schema("/users/me", "get", 200), body)
    contract.check(contract.webhook_schema("invitee.created"), envelope)
    assert contract.query_errors("/webhook_subscriptions", "get", "organization=...&scope=organization") == []
"""
from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs

from openapi_schema_validator import OAS31Validator, oas31_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

PATH = Path(__file__).resolve().with_name("calendly_v2.json")
BASE_URI = "urn:calendly-bridge:contracts:calendly_v2"


@cache
def contract() -> dict:
    return json.loads(PATH.read_text("utf-8"))


@cache
def _registry() -> Registry:
    return Registry().with_resource(BASE_URI, Resource(contents=contract(), specification=DRAFT202012))


def pointer(*parts: str | int) -> str:
    """A JSON pointer (RFC 6901) into the contract."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def at(json_pointer: str) -> dict:
    """A schema that means "the schema at this pointer in the contract"."""
    return {"$ref": f"{BASE_URI}#{json_pointer}"}


def resolve(json_pointer: str) -> Any:
    """The raw node at a pointer (not a schema wrapper)."""
    node: Any = contract()
    for part in json_pointer.lstrip("/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _follow(json_pointer: str) -> str:
    """Follow a local ``$ref`` on a non-schema object (a response, a parameter)."""
    node = resolve(json_pointer)
    while isinstance(node, dict) and "$ref" in node:
        json_pointer = node["$ref"].removeprefix("#")
        node = resolve(json_pointer)
    return json_pointer


def errors(schema: dict, instance: Any) -> list[str]:
    validator = OAS31Validator(schema, registry=_registry(), format_checker=oas31_format_checker)
    found = sorted(validator.iter_errors(instance), key=lambda e: (list(e.absolute_path), e.message))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]


def check(schema: dict, instance: Any) -> None:
    problems = errors(schema, instance)
    assert not problems, problems


# Operations --------------------------------------------------------------------------------------
def operation(path: str, method: str) -> str:
    method = method.lower()
    if method not in resolve(pointer("paths", path)):
        raise KeyError(f"the contract has no {method.upper()} {path}")
    return pointer("paths", path, method)


def response_pointer(path: str, method: str, status: int | str) -> str:
    return _follow(operation(path, method) + pointer("responses", str(status)))


def response_schema(path: str, method: str, status: int | str) -> dict:
    return at(response_pointer(path, method, status) + pointer("content", "application/json", "schema"))


def request_schema(path: str, method: str) -> dict:
    return at(operation(path, method) + pointer("requestBody", "content", "application/json", "schema"))


def webhook_schema(event: str) -> dict:
    return at(pointer("webhooks", event, "post", "requestBody", "content", "application/json", "schema"))


def component(name: str) -> dict:
    return at(pointer("components", "schemas", name))


def template_for(path: str) -> str | None:
    """The contract's path template that ``path`` (no query) matches; literal templates win."""
    templates = sorted(contract()["paths"], key=lambda t: t.count("{"))
    for template in templates:
        regex = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(regex, path):
            return template
    return None


def parameters(path: str, method: str) -> dict[tuple[str, str], str]:
    """(location, name) -> pointer to the parameter object; the operation's override the path's."""
    found: dict[tuple[str, str], str] = {}
    for owner in (pointer("paths", path), operation(path, method)):
        for index, _ in enumerate(resolve(owner).get("parameters", [])):
            param_ptr = _follow(owner + pointer("parameters", index))
            param = resolve(param_ptr)
            found[(param["in"], param["name"].lower() if param["in"] == "header" else param["name"])] = param_ptr
    return found


def _coerce(value: str, schema_ptr: str) -> Any:
    """A query or header string as the value its schema describes (a non-numeric integer stays a string)."""
    schema = resolve(_follow(schema_ptr))
    if schema.get("type") == "integer" and value.isascii() and value.lstrip("-").isdigit():
        return int(value)
    return value


def query_errors(path: str, method: str, query: str) -> list[str]:
    """Every way a request's query string breaks the contract: unknown, missing, repeated or invalid parameters."""
    declared = {name: ptr for (where, name), ptr in parameters(path, method).items() if where == "query"}
    given = parse_qs(query, keep_blank_values=True)
    problems = [f"{name}: not a parameter of {method.upper()} {path}" for name in given if name not in declared]
    problems += [f"{name}: required" for name, ptr in declared.items() if resolve(ptr).get("required") and name not in given]
    for name, values in given.items():
        if name not in declared:
            continue
        if len(values) > 1:
            problems.append(f"{name}: given {len(values)} times")
        schema_ptr = declared[name] + "/schema"
        problems += [f"{name}={values[-1]!r}: {e}" for e in errors(at(schema_ptr), _coerce(values[-1], schema_ptr))]
    return problems


def response_header_errors(path: str, method: str, status: int | str, headers) -> list[str]:
    """Every documented header of a response that is missing or invalid in ``headers``."""
    response_ptr = response_pointer(path, method, status)
    headers = {str(name).lower(): value for name, value in dict(headers).items()}  # HTTP names ignore case
    problems = []
    for name in resolve(response_ptr).get("headers", {}):
        header_ptr = _follow(response_ptr + pointer("headers", name))
        value = headers.get(name.lower())
        if value is None:
            if resolve(header_ptr).get("required"):
                problems.append(f"{name}: missing")
            continue
        problems += [f"{name}: {e}" for e in errors(at(header_ptr + "/schema"), _coerce(value, header_ptr + "/schema"))]
    return problems


def signature_header_schema() -> dict:
    return at(pointer("components", "parameters", "Signature", "schema"))


def examples() -> Iterator[tuple[str, dict, Any]]:
    """(where, schema, value) for every example in the contract."""
    doc = contract()
    owners = [pointer("paths", p, m) for p, item in doc["paths"].items() for m, op in item.items()
              if isinstance(op, dict) and "responses" in op]
    owners += [pointer("webhooks", event, "post") for event in doc.get("webhooks", {})]
    media: list[str] = []
    for owner in owners:
        op = resolve(owner)
        if "requestBody" in op:
            media.append(owner + pointer("requestBody", "content", "application/json"))
        for status in op.get("responses", {}):
            response_ptr = _follow(owner + pointer("responses", status))
            if "application/json" in resolve(response_ptr).get("content", {}):
                media.append(response_ptr + pointer("content", "application/json"))
    for media_ptr in dict.fromkeys(media):  # shared responses once
        for name, example in resolve(media_ptr).get("examples", {}).items():
            yield f"{media_ptr}/examples/{name}", at(media_ptr + "/schema"), example["value"]
