import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from odoo.tests import BaseCase, tagged

from odoo.addons.gobysend_automation import sending, transport

# The test server's loopback network, as an administrator would allow it.
LOCAL = transport.parse_allowed_networks("127.0.0.0/8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def setup(self):
        with self.server.lock:
            self.server.connections += 1
        return super().setup()

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.received.append((self.command, self.path, dict(self.headers), body))
        if self.path.startswith("/slow"):
            time.sleep(0.5)
        payload = json.dumps({"id": "provider-%s" % len(self.server.received), "path": self.path}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        if self.path.startswith("/gzip"):
            payload = gzip.compress(payload)
            self.send_header("Content-Encoding", "gzip")
        if self.path.startswith("/close"):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.received = []

    def handle_error(self, request, client_address):
        pass  # a client that gave up (the timeout test) leaves a broken pipe behind


@tagged("post_install", "-at_install")
class TestTransport(BaseCase):
    """The lean transport sends what ``requests`` would send and fails as ``requests`` fails."""

    def setUp(self):
        super().setUp()
        self.server = _Server()
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        # Run first: a connection kept alive past its test could reach a later test's server
        # on the same port.
        self.addCleanup(transport.close_connections)
        self.url = "http://127.0.0.1:%s" % self.server.server_address[1]

    def perform(self, method, path, **kwargs):
        response, error = sending.perform(sending.OutgoingRequest(method, self.url + path, **kwargs), LOCAL)
        if error is not None:
            raise error
        return response

    def test_sends_what_requests_sends(self):
        cases = [
            {"json": {"text": "Chào Lan", "n": 2}},
            {"data": {"To": "+84912345678", "Body": "Xin chào", "Skip": None}},
            {"data": b'{"raw": true}', "headers": {"Content-Type": "application/json", "X-Key": "k"}},
            {"data": {"a": "1"}, "auth": ("sid", "sécret")},
        ]
        for kwargs in cases:
            with self.subTest(kwargs=kwargs):
                settings = sending._environment(self.url)
                self.assertTrue(
                    transport.can_send(self.url + "/x", dict(kwargs, timeout=5, allow_redirects=False), settings)
                )
                ours = self.perform("POST", "/ours?q=1", timeout=5, allow_redirects=False, **kwargs)
                theirs = requests.post(self.url + "/theirs?q=1", timeout=5, allow_redirects=False, **kwargs)
                (_m1, path1, headers1, body1), (_m2, path2, headers2, body2) = self.server.received[-2:]
                self.assertEqual((path1, path2), ("/ours?q=1", "/theirs?q=1"))
                self.assertEqual(body1, body2)
                for name in ("Content-Type", "Content-Length", "Authorization", "X-Key"):
                    self.assertEqual(headers1.get(name), headers2.get(name), name)
                self.assertEqual(ours.status_code, 201)
                self.assertEqual(ours.json()["path"], "/ours?q=1")
                self.assertEqual(ours.headers["content-type"], theirs.headers["content-type"])
                self.assertEqual(ours.text, json.dumps(ours.json()))

    def test_keeps_connections_alive_and_reopens_closed_ones(self):
        for _n in range(3):
            self.perform("POST", "/a", json={}, timeout=5, allow_redirects=False)
        self.assertEqual(self.server.connections, 1)
        # The server closes this one after answering: the next request opens a new connection.
        self.perform("POST", "/close", json={}, timeout=5, allow_redirects=False)
        answer = self.perform("POST", "/b", json={}, timeout=5, allow_redirects=False)
        self.assertEqual(answer.json()["path"], "/b")
        self.assertEqual(self.server.connections, 2)
        self.assertEqual(len(self.server.received), 5)

    def test_compressed_answer_is_decoded(self):
        answer = self.perform("POST", "/gzip", json={}, timeout=5, allow_redirects=False)
        self.assertEqual(answer.json()["path"], "/gzip")

    def test_failures_raise_the_requests_exceptions(self):
        with self.assertRaises(requests.Timeout):
            self.perform("POST", "/slow", json={}, timeout=0.1, allow_redirects=False)
        # Nothing listens on port 9.
        _response, error = sending.perform(
            sending.OutgoingRequest("POST", "http://127.0.0.1:9/refused", json={}, timeout=1, allow_redirects=False),
            LOCAL,
        )
        self.assertIsInstance(error, requests.ConnectionError)
        self.assertIn("Failed to establish a new connection", str(error))
        # After a failure the next request on the same thread works.
        self.assertEqual(self.perform("POST", "/after", json={}, timeout=5, allow_redirects=False).status_code, 201)

    def test_other_requests_go_through_requests(self):
        settings = sending._environment(self.url)
        for kwargs in (
            {"params": {"q": "1"}, "timeout": 5, "allow_redirects": False},
            {"json": {}, "timeout": 5},  # redirects followed
            {"json": {}, "timeout": (1, 5), "allow_redirects": False},
        ):
            self.assertFalse(transport.can_send(self.url + "/x", kwargs, settings), kwargs)
        self.assertFalse(
            transport.can_send(
                self.url,
                {"json": {}, "timeout": 5, "allow_redirects": False},
                {"proxies": {"http": "http://p:3128"}},
            )
        )
        answer = self.perform("GET", "/query", params={"to": "+84 912"}, timeout=5, allow_redirects=False)
        self.assertEqual(answer.json()["path"], "/query?to=%2B84+912")
