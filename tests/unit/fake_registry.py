"""A tiny in-process Confluent schema registry for unit tests (127.0.0.1 only)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeRegistry:
    """A tiny in-process schema registry: fixed answers by path, and a request log."""

    def __init__(self):
        self.answers = {}
        self.requests = []
        self.authorizations = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                registry.requests.append(self.path)
                registry.authorizations.append(self.headers.get("Authorization"))
                status, body = registry.answers.get(self.path, (404, {"error_code": 40403}))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def register(self, schema_id, schema, **extra):
        """Serve ``schema`` under ``schema_id``."""
        self.answers[f"/schemas/ids/{schema_id}"] = (200, {"schema": json.dumps(schema), **extra})

    def close(self):
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
