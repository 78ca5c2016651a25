"""The local host hands requests over as the real Functions host does (azure-functions-host's
routing and its conversion for the Python worker), so what works under `python -m shared serve`
works after `func start` or a deploy. Checked on a WSGI level with recording functions, and over a
real socket against function_app."""
from __future__ import annotations

import io

import pytest

from devtools.localhost import FunctionsWsgiApp, Route, host_query, parse_template


class Recorded:
    """A function_app-style function: records the request object it was given."""

    def __init__(self, name: str, status: int = 200, body: bytes = b"ok", headers: dict | None = None, fail: bool = False):
        self.name, self.status, self.body, self.headers, self.fail = name, status, body, headers or {}, fail
        self.calls: list[dict] = []

    def __call__(self, request):
        self.calls.append(request)
        if self.fail:
            raise RuntimeError("the function failed")
        return Response(self.status, self.body, self.headers)


class Request(dict):
    def __init__(self, method, url, headers, params, route_params, body):
        super().__init__(method=method, url=url, headers=headers, params=params, route_params=route_params, body=body)


class Response:
    def __init__(self, status, body, headers):
        self.status_code, self._body, self.headers = status, body, headers

    def get_body(self):
        return self._body


def app_with(*specs: tuple[str, list[str], Recorded]) -> FunctionsWsgiApp:
    return FunctionsWsgiApp([Route(fn.name, parse_template(route), frozenset(methods), fn, Request)
                             for route, methods, fn in specs], "api")


def call(app, method: str, uri: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict, bytes]:
    path, _, query = uri.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "REQUEST_URI": uri, "QUERY_STRING": query,
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "7071", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body)}
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    answer = {}

    def start_response(status, headers):
        answer.update(status=int(status.split()[0]), headers=dict(headers))

    payload = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], payload


def test_route_literals_match_case_insensitively_and_the_prefix_too():
    health = Recorded("health")
    app = app_with(("health", ["GET"], health))
    assert call(app, "GET", "/API/HEALTH")[0] == 200 and call(app, "GET", "/api/Health")[0] == 200
    assert len(health.calls) == 2


def test_literal_segments_win_over_parameters_whatever_the_order():
    by_id, literal = Recorded("by_id"), Recorded("literal")
    for order in ((("things/{id}", ["GET"], by_id), ("things/special", ["GET"], literal)),
                  (("things/special", ["GET"], literal), ("things/{id}", ["GET"], by_id))):
        app = app_with(*order)
        call(app, "GET", "/api/things/special")
        call(app, "GET", "/api/things/other")
    assert len(literal.calls) == 2 and [c["route_params"] for c in by_id.calls] == [{"id": "other"}] * 2


def test_an_encoded_slash_stays_inside_the_route_value():
    fn = Recorded("get")
    app = app_with(("subscriptions/{id}", ["GET"], fn))
    assert call(app, "GET", "/api/subscriptions/a%2Fb")[0] == 200
    assert fn.calls[0]["route_params"] == {"id": "a/b"}
    assert call(app, "GET", "/api/subscriptions/a/b")[0] == 404


def test_no_function_or_no_method_is_an_empty_404_and_a_failing_function_an_empty_500():
    app = app_with(("things", ["GET"], Recorded("list")), ("boom", ["GET"], Recorded("boom", fail=True)))
    assert call(app, "GET", "/api/nothing")[::2] == (404, b"")
    assert call(app, "DELETE", "/api/things")[::2] == (404, b"")
    assert call(app, "GET", "/other/things")[::2] == (404, b"")
    assert call(app, "GET", "/api/boom")[::2] == (500, b"")


def test_query_keys_merge_case_insensitively_repeats_join_with_commas_and_empties_drop():
    assert host_query("limit=1&limit=2&Limit=3&cursor=&x=a%2Cb") == {"limit": "1,2,3", "x": "a,b"}
    fn = Recorded("list")
    call(app_with(("things", ["GET"], fn)), "GET", "/api/things?limit=1&LIMIT=2&empty=")
    assert fn.calls[0]["params"] == {"limit": "1,2"}


def test_header_names_arrive_lower_cased():
    fn = Recorded("echo")
    call(app_with(("echo", ["POST"], fn)), "POST", "/api/echo", b"{}", {"X-Calendly-Thing": "1", "Content-Type": "application/json"})
    assert {"x-calendly-thing", "content-type", "content-length"} <= set(fn.calls[0]["headers"])
    assert all(name == name.lower() for name in fn.calls[0]["headers"])


def test_a_response_without_a_content_type_is_plain_text_and_204_has_no_body():
    app = app_with(("text", ["GET"], Recorded("text", body=b"hi")), ("json", ["GET"], Recorded("json", headers={"Content-Type": "application/json"})),
                   ("none", ["DELETE"], Recorded("none", status=204, body=b"ignored")))
    assert call(app, "GET", "/api/text")[1]["Content-Type"] == "text/plain; charset=utf-8"
    assert call(app, "GET", "/api/json")[1]["Content-Type"] == "application/json"
    status, headers, body = call(app, "DELETE", "/api/none")
    assert (status, body) == (204, b"") and "Content-Type" not in headers


def test_function_app_routes_resolve_like_the_host(bridge):
    assert bridge.api("GET", "/HEALTH").status_code == 200
    listed = bridge.api("GET", "/Subscriptions", params=[("limit", "1"), ("limit", "2")])
    assert listed.status_code == 400 and listed.json()["error"]["code"] == "invalid_limit", "1,2 is not a limit"
    assert bridge.api("GET", "/subscriptions", params={"limit": ""}).status_code == 200, "an empty value is dropped"


@pytest.mark.parametrize("template, segments", [
    ("subscriptions/{id}/deliveries", ("subscriptions", "{id}", "deliveries")),
    ("calendly/events/{id:alpha}", ("calendly", "events", "{id}")),
    ("things/{id?}", ("things", "{id?}")),
])
def test_templates_parse_into_literals_and_parameters(template, segments):
    parsed = parse_template(template)
    shown = tuple(f"{{{s.text}{'?' if s.optional else ''}}}" if s.parameter else s.text for s in parsed)
    assert shown == segments
