"""A provider's HTTP API on 127.0.0.1: it records every request and answers what the test
scripted, in the provider's own format. The outside service, replaced at the network boundary."""

import json as json_module
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class RecordedRequest:
    def __init__(self, method, target, headers, body):
        self.method = method
        self.target = target
        parts = urlsplit(target)
        self.path = parts.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = headers
        self.body = body

    def json(self):
        return json_module.loads(self.body)

    def form(self):
        return parse_qs(self.body.decode(), keep_blank_values=True, strict_parsing=bool(self.body))

    def __repr__(self):
        return f"<{self.method} {self.target} {self.body[:200]!r}>"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = RecordedRequest(self.command, self.path, self.headers, body)
        self.server.requests.append(request)
        status, payload, headers, delay = self.server.next_answer(request)
        if status is None:
            # The connection breaks after the request arrived: the client gets no answer at all.
            self.close_connection = True
            return
        with self.server.in_flight_lock:
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        try:
            if delay:
                time.sleep(delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = True
        finally:
            with self.server.in_flight_lock:
                self.server.in_flight -= 1

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class ProviderServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = []
        self.unexpected = []
        # How many requests were being answered at the same moment, at most.
        self.in_flight = self.max_in_flight = 0
        self.in_flight_lock = threading.Lock()
        self._answers = defaultdict(deque)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self):
        return "http://127.0.0.1:%s" % self.server_address[1]

    def expect(self, path, status=200, json=None, text=None, headers=None, delay=0):
        """Answer the next request to ``path`` with ``status`` and a JSON or text body."""
        all_headers = {}
        if json is not None:
            payload = json_module.dumps(json).encode()
            all_headers["Content-Type"] = "application/json; charset=utf-8"
        else:
            payload = (text or "").encode()
            all_headers["Content-Type"] = "text/plain; charset=utf-8"
        all_headers.update(headers or {})
        self._answers[path].append((status, payload, all_headers, delay))

    def expect_dropped(self, path):
        """Close the connection of the next request to ``path`` without answering it."""
        self._answers[path].append((None, b"", {}, 0))

    def next_answer(self, request):
        if self._answers[request.path]:
            return self._answers[request.path].popleft()
        self.unexpected.append(request)
        return 599, b"no answer scripted for this request", {"Content-Type": "text/plain"}, 0

    def requests_to(self, path):
        return [request for request in self.requests if request.path == path]

    def handle_error(self, request, client_address):
        # A client that gave up (timeout tests) leaves a broken pipe behind: expected.
        pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.shutdown()
        self.server_close()
