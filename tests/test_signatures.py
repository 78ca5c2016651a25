"""Calendly-Webhook-Signature: t=<unix>,v1=HMAC-SHA256(key, "<t>." + body)."""
import hashlib
import hmac

import pytest

from shared import signatures
from shared.signatures import SignatureError

KEY = "s3cr3t-signing-key"
BODY = '{"event":"invitee.created","payload":{"name":"Zoë Ångström"}}'.encode("utf-8")
NOW = 1_764_000_000


# A fixed vector, computed outside this code base:
#   printf '%s' '1764000000.{"event":"invitee.created","payload":{"email":"zoë@example.com"}}' \
#     | openssl dgst -sha256 -hmac 'calendly-test-signing-key-1'
VECTOR_KEY = "calendly-test-signing-key-1"
VECTOR_BODY = '{"event":"invitee.created","payload":{"email":"zoë@example.com"}}'.encode("utf-8")
VECTOR_HEADER = "t=1764000000,v1=682db05d12513fcd795acc33d82038d8381325bc95856f1db7103fc8f9188f8c"


def test_signing_reproduces_the_fixed_vector():
    assert signatures.sign(VECTOR_BODY, VECTOR_KEY, 1764000000) == VECTOR_HEADER


def test_the_fixed_vector_verifies_and_one_changed_byte_does_not():
    assert signatures.verify(VECTOR_BODY, VECTOR_HEADER, VECTOR_KEY, 180, now=1764000000 + 179) == 1764000000
    with pytest.raises(SignatureError):
        signatures.verify(VECTOR_BODY.replace(b"z", b"Z", 1), VECTOR_HEADER, VECTOR_KEY, 180, now=1764000000)


def test_signature_matches_calendly_spec_vector():
    expected = hmac.new(KEY.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signatures.sign(BODY, KEY, NOW) == f"t={NOW},v1={expected}"


def test_valid_signature_is_accepted():
    header = signatures.sign(BODY, KEY, NOW)
    assert signatures.verify(BODY, header, KEY, tolerance=180, now=NOW + 10) == NOW


def test_tampered_body_is_rejected():
    header = signatures.sign(BODY, KEY, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        signatures.verify(BODY.replace(b"created", b"canceled"), header, KEY, 180, now=NOW)


def test_wrong_key_is_rejected():
    header = signatures.sign(BODY, "another-key", NOW)
    with pytest.raises(SignatureError, match="does not match"):
        signatures.verify(BODY, header, KEY, 180, now=NOW)


def test_changed_timestamp_is_rejected():
    header = signatures.sign(BODY, KEY, NOW).replace(f"t={NOW}", f"t={NOW + 1}")
    with pytest.raises(SignatureError, match="does not match"):
        signatures.verify(BODY, header, KEY, 180, now=NOW)


@pytest.mark.parametrize("skew", [181, -181, 10_000])
def test_stale_or_future_timestamp_is_rejected(skew):
    header = signatures.sign(BODY, KEY, NOW)
    with pytest.raises(SignatureError, match="tolerance"):
        signatures.verify(BODY, header, KEY, 180, now=NOW + skew)


def test_timestamp_at_the_tolerance_edge_is_accepted():
    header = signatures.sign(BODY, KEY, NOW)
    assert signatures.verify(BODY, header, KEY, 180, now=NOW + 180) == NOW


def test_any_matching_v1_among_several_is_accepted():
    good = signatures.sign(BODY, KEY, NOW).split("v1=")[1]
    header = f"t={NOW},v1={'0' * 64},v1={good}"
    assert signatures.verify(BODY, header, KEY, 180, now=NOW) == NOW


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "t=1", "v1=00", "t=,v1=", "t=1;v1=2",
                                    "t=１２３,v1=00", "x" * 5000, "t=99999999999999999999,v1=00"])
def test_malformed_headers_are_rejected_with_signature_error(header):
    with pytest.raises(SignatureError):
        signatures.verify(BODY, header, KEY, 180, now=NOW)


def test_verification_compares_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(signatures.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    with pytest.raises(SignatureError):
        signatures.verify(BODY, f"t={NOW},v1={'0' * 64}", KEY, 180, now=NOW)
    assert calls, "signatures must be compared with hmac.compare_digest"


def test_uppercase_hex_and_spaces_after_commas_are_accepted():
    t, digest = signatures.sign(BODY, KEY, NOW).split(",")
    assert signatures.verify(BODY, f"{t}, {digest.upper().replace('V1=', 'v1=')}", KEY, 180, now=NOW) == NOW
