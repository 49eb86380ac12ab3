import gzip
import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from odoo.tests import BaseCase, common, tagged

from odoo.addons.gobysend_automation import sending, transport

LOOPBACK = transport.parse_allowed_networks("127.0.0.0/8, ::1/128")
JUST_127_0_0_1 = transport.parse_allowed_networks("127.0.0.1/32")


class _Handler(BaseHTTPRequestHandler):
    """``/ok``; ``/redirect/<host>`` to ``http://<host>:<this port>/ok``; ``/size/<n>`` an answer of
    ``n`` bytes, ``/chunked/<n>`` the same without a length; ``/gzip/<n>`` ``n`` bytes compressed."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.received.append(self.path)
        _empty, kind, *rest = self.path.split("?")[0].split("/")
        headers = {"Content-Type": "text/plain"}
        body = b"ok"
        status = 200
        if kind == "redirect":
            status = 302
            headers["Location"] = f"http://{rest[0]}:{self.server.server_address[1]}/ok"
            body = b""
        elif kind in ("size", "chunked"):
            body = b"x" * int(rest[0])
        elif kind == "gzip":
            body = gzip.compress(b"x" * int(rest[0]))
            headers["Content-Encoding"] = "gzip"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if kind == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 65536):
                chunk = body[start : start + 65536]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received = []

    def handle_error(self, request, client_address):
        pass  # a client that stops reading an answer too large leaves a broken pipe behind


# Both ways a request goes out: the lean transport (a JSON body) and ``requests`` (query parameters).
BOTH_PATHS = (
    ("transport", {"json": {"text": "hi"}}),
    ("requests", {"params": {"text": "hi"}}),
)


@tagged("post_install", "-at_install")
class TestOutboundDestinations(BaseCase):
    """Requests reach public addresses, and the server's own networks only where allowed."""

    @classmethod
    def _request_handler(cls, session, request, /, **kwargs):
        # Odoo's test harness lets requests reach 127.0.0.1 and localhost only; a redirect to
        # another loopback address must be stopped by our own check, so it goes out as usual.
        if request.url.startswith("http://127.0.0.2:"):
            return common._super_send(session, request, **kwargs)
        return super()._request_handler(session, request, **kwargs)

    def setUp(self):
        super().setUp()
        self.server = _Server()
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        self.addCleanup(transport.close_connections)
        self.port = self.server.server_address[1]

    def perform(self, url, allowed_networks, method="POST", **kwargs):
        kwargs.setdefault("allow_redirects", False)
        response, error = sending.perform(sending.OutgoingRequest(method, url, timeout=5, **kwargs), allowed_networks)
        if error is not None:
            raise error
        return response

    def test_addresses_of_the_servers_own_networks_are_refused(self):
        cases = {
            "127.0.0.1": "loopback",
            "127.53.0.9": "loopback",
            "::1": "loopback",
            "10.1.2.3": "private",
            "172.16.0.1": "private",
            "192.168.1.1": "private",
            "fd00::1": "private",
            "169.254.169.254": "link-local",
            "fe80::1": "link-local",
            "224.0.0.1": "multicast",
            "ff02::1": "multicast",
            "0.0.0.0": "unspecified",
            "::": "unspecified",
            "240.0.0.1": "reserved",
            "100.64.0.1": "reserved",
            # IPv6 addresses that carry an IPv4 address are judged by it.
            "::ffff:127.0.0.1": "loopback",
            "::ffff:169.254.169.254": "link-local",
            "::ffff:10.0.0.1": "private",
            "2002:7f00:1::": "loopback",
        }
        for address, kind in cases.items():
            with self.subTest(address=address):
                self.assertEqual(transport.destination_refusal(address), kind)
        for public in ("93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"):
            self.assertIsNone(transport.destination_refusal(public), public)

    def test_allowed_networks_let_their_addresses_through(self):
        self.assertIsNone(transport.destination_refusal("127.0.0.1", LOOPBACK))
        self.assertIsNone(transport.destination_refusal("::ffff:127.0.0.1", LOOPBACK))
        self.assertIsNone(transport.destination_refusal("::1", LOOPBACK))
        # Only the networks listed.
        self.assertEqual(transport.destination_refusal("10.0.0.1", LOOPBACK), "private")
        self.assertEqual(transport.destination_refusal("127.0.0.2", JUST_127_0_0_1), "loopback")
        self.assertEqual(
            transport.parse_allowed_networks(" 10.0.0.0/8,192.168.1.20 ,\nfd00::/8,"),
            tuple(map(ipaddress.ip_network, ("10.0.0.0/8", "192.168.1.20/32", "fd00::/8"))),
        )
        with self.assertRaises(ValueError):
            transport.parse_allowed_networks("10.0.0.0/8, intranet", strict=True)

    def test_local_server_is_refused_unless_its_network_is_allowed(self):
        # "localhost" is refused too: the check is made on the addresses the name resolves to.
        for host in ("127.0.0.1", "localhost"):
            for path, kwargs in BOTH_PATHS:
                with self.subTest(host=host, path=path):
                    url = f"http://{host}:{self.port}/ok"
                    with self.assertRaises(transport.DestinationRefused) as refused:
                        self.perform(url, (), **kwargs)
                    self.assertEqual(refused.exception.host, host)
                    self.assertIn(refused.exception.address, ("127.0.0.1", "::1"))
                    self.assertEqual(refused.exception.kind, "loopback")
                    # A requests exception that retrying cannot help.
                    self.assertIsInstance(refused.exception, requests.exceptions.InvalidURL)
                    self.assertEqual(self.server.received, [], "nothing reached the server")

                    self.assertEqual(self.perform(url, LOOPBACK, **kwargs).text, "ok")
                    self.assertEqual(len(self.server.received), 1)
                    self.server.received.clear()

    def test_a_connection_made_where_more_was_allowed_is_not_reused(self):
        url = f"http://127.0.0.1:{self.port}/ok"
        self.assertEqual(self.perform(url, LOOPBACK, json={}).status_code, 200)
        with self.assertRaises(transport.DestinationRefused):
            self.perform(url, (), json={})

    def test_every_redirect_is_checked(self):
        # Providers' requests never follow redirects; a request that does checks each hop.
        allowed = self.perform(f"http://127.0.0.1:{self.port}/redirect/127.0.0.1", JUST_127_0_0_1, allow_redirects=True)
        self.assertEqual(allowed.text, "ok")
        self.assertEqual(self.server.received, ["/redirect/127.0.0.1", "/ok"])
        self.server.received.clear()
        with self.assertRaises(transport.DestinationRefused) as refused:
            self.perform(f"http://127.0.0.1:{self.port}/redirect/127.0.0.2", JUST_127_0_0_1, allow_redirects=True)
        self.assertEqual((refused.exception.host, refused.exception.kind), ("127.0.0.2", "loopback"))
        self.assertEqual(self.server.received, ["/redirect/127.0.0.2"])

    def test_answers_larger_than_the_cap_are_refused(self):
        cap = transport.MAX_ANSWER_BYTES
        for path, kwargs in BOTH_PATHS:
            for kind in ("size", "chunked", "gzip"):
                with self.subTest(path=path, kind=kind):
                    url = f"http://127.0.0.1:{self.port}/{kind}"
                    self.assertEqual(len(self.perform(f"{url}/{cap}", LOOPBACK, **kwargs).content), cap)
                    with self.assertRaises(transport.AnswerTooLarge):
                        self.perform(f"{url}/{cap + 1}", LOOPBACK, **kwargs)
                    # The connection left with an unread answer is not used again.
                    self.assertEqual(self.perform(f"http://127.0.0.1:{self.port}/ok", LOOPBACK, **kwargs).text, "ok")
        # A small compressed answer that would expand far past the cap is not expanded.
        with self.assertRaises(transport.AnswerTooLarge):
            self.perform(f"http://127.0.0.1:{self.port}/gzip/{cap * 50}", LOOPBACK, json={})
