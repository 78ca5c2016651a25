"""A fake Azure Key Vault on 127.0.0.1 over HTTPS (self-signed certificate) that speaks the
secrets REST API the real azure-keyvault-secrets SDK uses, bearer challenge included."""
from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken


def make_certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "kv.pem", directory / "kv.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def https_server(handler, cert_path: Path, key_path: Path) -> tuple[ThreadingHTTPServer, str, threading.Thread]:
    """A threading HTTPS server on an ephemeral 127.0.0.1 port with that certificate: (server, its URL, the
    thread that serves it once started)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    return server, f"https://127.0.0.1:{server.server_address[1]}", thread


class FakeKeyVault:
    TENANT = "00000000-0000-0000-0000-000000000001"
    TOKEN = "fake-kv-access-token"

    def __init__(self, directory: Path):
        self.secrets: dict[str, str] = {}
        self.requests = 0  # every request, whatever the mode
        self.reads = 0  # authenticated secret reads (cache hits never get here)
        self.challenges = 0  # 401s with the bearer challenge
        # "up"; "503": answers 503; "drop": closes every connection unanswered; "hang": never answers
        self.mode = "up"
        self._released = threading.Event()
        self.cert_path, key_path = make_certificate(directory)
        vault = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict | None = None, headers: dict | None = None):
                payload = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                vault.requests += 1
                if vault.mode == "503":
                    return self._send(503, {"error": {"code": "ServiceUnavailable", "message": "down"}})
                if vault.mode == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if vault.mode == "hang":
                    vault._released.wait(60)
                    self.close_connection = True
                    return None
                if self.headers.get("Authorization") != f"Bearer {FakeKeyVault.TOKEN}":
                    vault.challenges += 1
                    challenge = (f'Bearer authorization="https://login.microsoftonline.com/{FakeKeyVault.TENANT}", '
                                 f'resource="https://vault.azure.net"')
                    return self._send(401, {"error": {"code": "Unauthorized", "message": "no token"}}, {"WWW-Authenticate": challenge})
                parts = [p for p in urlsplit(self.path).path.split("/") if p]
                if len(parts) < 2 or parts[0] != "secrets":
                    return self._send(404, {"error": {"code": "NotFound", "message": "no such route"}})
                vault.reads += 1
                name = parts[1]
                if name not in vault.secrets:
                    return self._send(404, {"error": {"code": "SecretNotFound", "message": f"A secret with (name/id) {name} was not found in this key vault."}})
                return self._send(200, {"value": vault.secrets[name], "id": f"{vault.url}/secrets/{name}/0123456789abcdef",
                                        "attributes": {"enabled": True, "created": 1700000000, "updated": 1700000000,
                                                       "recoveryLevel": "Recoverable+Purgeable"}})

        self._server, self.url, self._thread = https_server(Handler, self.cert_path, key_path)

    def start(self) -> "FakeKeyVault":
        self._thread.start()
        return self

    @property
    def down(self) -> bool:
        return self.mode != "up"

    @down.setter
    def down(self, value: bool) -> None:
        self.mode = "503" if value else "up"

    def client(self):
        """The real SecretClient, made as the composition root makes it, trusting this vault's certificate."""
        from shared.azure_clients import secret_client

        return secret_client(self.url, StaticCredential(), connection_verify=str(self.cert_path), verify_challenge_resource=False)

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()


class StaticCredential:
    """A TokenCredential that hands out the fake vault's token (no Entra ID here)."""

    def __init__(self):
        self.scopes: list[tuple] = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.append(scopes)
        return AccessToken(FakeKeyVault.TOKEN, 4_102_444_800)
