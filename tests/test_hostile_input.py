"""Hostile input over a real socket: clear 4xx, never a 5xx or a stack trace."""
import socket

import pytest

from tests.helpers import envelope, post_event, signing_key, subscribe


def raw_request(bridge, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_huge_header_value_is_refused_with_a_4xx(bridge):
    response = bridge.api("GET", "/subscriptions", headers={"X-Junk": "x" * 300_000})
    assert 400 <= response.status_code < 500
    assert bridge.api("GET", "/health").status_code == 200


def test_huge_signature_header_is_a_401(bridge, target):
    sub = subscribe(bridge, target).json()
    assert post_event(bridge, sub, envelope(), header="t=1,v1=" + "a" * 50_000).status_code == 401


@pytest.mark.parametrize("path", ["/api/subscriptions/../../etc/passwd", "/api/subscriptions/%2e%2e%2f%2e%2e%2fetc",
                                  "/api/calendly/events/..%00", "/api/deliveries/../subscriptions/replay"])
def test_path_traversal_in_ids_is_a_4xx(bridge, path):
    head = raw_request(bridge, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()).split(b"\r\n", 1)[0]
    assert head.split()[1].startswith(b"4"), head


def test_body_longer_than_announced_or_a_lying_content_length_is_handled(bridge):
    response = raw_request(bridge, b"POST /api/subscriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{\"a\":1,\"b\":2}")
    assert response.split()[1].startswith(b"4")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream"])
def test_wrong_content_type_with_junk_is_a_400(bridge, content_type):
    response = bridge.api("POST", "/subscriptions", data=b"\xff\xfe not json", headers={"Content-Type": content_type})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_body"


def test_management_body_over_64_kib_is_a_413(bridge):
    response = bridge.api("POST", "/subscriptions", data=b'{"url": "' + b"a" * 70_000 + b'"}')
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


def test_non_utf8_event_body_with_a_valid_signature_is_a_400(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    response = post_event(bridge, sub, b'{"event": "invitee.created", "x": "\xff"}', key=signing_key(bridge, sub, sandbox))
    assert response.status_code == 400


DEEP = [b"[" * 30_000 + b"]" * 30_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        b'{"url": "https://example.com/x", "events": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"]


@pytest.mark.parametrize("body", DEEP, ids=["arrays", "objects", "inside-a-subscribe-body"])
def test_deeply_nested_json_is_a_400_on_every_body_reading_route(bridge, sandbox, target, body):
    sub = subscribe(bridge, target).json()
    for method, path in (("POST", "/subscriptions"), ("POST", "/triggers/invitee-created"), ("DELETE", "/subscriptions"),
                         ("POST", f"/subscriptions/{sub['id']}/test")):
        response = bridge.api(method, path, data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (path, response.status_code, response.text[:200])
        assert response.json()["error"]["code"] == "invalid_body" and "nests deeper" in response.json()["error"]["message"]
    # Calendly's side: even correctly signed (only Calendly and the bridge hold the key), it is a 400.
    response = post_event(bridge, sub, body, key=signing_key(bridge, sub, sandbox))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_event"
    assert bridge.api("GET", "/health").status_code == 200


def test_json_nested_just_within_the_limit_is_still_read(bridge, target):
    from shared.jsonbody import MANAGEMENT_MAX_DEPTH
    body = {"url": f"{target.url}/flow", "events": ["invitee.created"], "extra": None}
    extra = 1
    for _ in range(MANAGEMENT_MAX_DEPTH - 1):  # the body object itself is the first level
        extra = [extra]
    body["extra"] = extra
    assert bridge.api("POST", "/subscriptions", json=body).status_code == 201
    body["extra"] = [extra]
    assert bridge.api("POST", "/subscriptions", json=body).status_code == 400
