"""The schema-registry client over https: a private CA is trusted only when given, a client certificate is sent."""

from __future__ import annotations

import json
import shutil
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.kafka.broker import make_ca, make_certificates
from worker.contracts.registry import HttpSchemaResolver, RegistryUnavailable

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificates")

SCHEMA = {"type": "record", "name": "T", "namespace": "t", "fields": [{"name": "a", "type": "int"}]}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1 (also usable as a client certificate)."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def https_registry(certs):
    """An https registry on 127.0.0.1 that requires a client certificate signed by the same CA."""
    folder = certs.ca_file.parent
    seen: list[object] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.connection.getpeercert())
            payload = json.dumps({"schema": json.dumps(SCHEMA)}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "broker.pem", folder / "broker.key")
    context.load_verify_locations(certs.ca_file)
    context.verify_mode = ssl.CERT_REQUIRED
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()
    thread.join()


def test_private_ca_and_client_certificate(https_registry, certs):
    """With the CA file and a client certificate the schema is fetched, and the server saw the certificate."""
    url, seen = https_registry
    folder = certs.ca_file.parent
    resolver = HttpSchemaResolver(
        url,
        ca_file=str(certs.ca_file),
        cert_file=str(folder / "broker.pem"),
        key_file=str(folder / "broker.key"),
    )
    assert resolver.schema_for_id(1)["name"] == "t.T"
    assert seen
    assert seen[0]


def test_untrusted_registry_certificate_is_unavailable(https_registry, certs, tmp_path):
    """A CA that did not sign the registry's certificate makes the registry unavailable, not a bad record."""
    url, seen = https_registry
    other_ca, _ = make_ca(tmp_path / "other")
    folder = certs.ca_file.parent
    resolver = HttpSchemaResolver(
        url, ca_file=str(other_ca), cert_file=str(folder / "broker.pem"), key_file=str(folder / "broker.key")
    )
    with pytest.raises(RegistryUnavailable):
        resolver.schema_for_id(1)
    assert seen == []


def test_no_client_certificate_is_refused(https_registry, certs):
    """Without a client certificate a registry that requires one refuses the connection."""
    url, seen = https_registry
    with pytest.raises(RegistryUnavailable):
        HttpSchemaResolver(url, ca_file=str(certs.ca_file)).schema_for_id(1)
    assert seen == []


def test_tls_files_need_https():
    """TLS files with an http URL are a settings mistake, refused at construction."""
    with pytest.raises(ValueError, match="https"):
        HttpSchemaResolver("http://127.0.0.1:1", ca_file="/x/ca.pem")
