import hashlib
import hmac
import json
import time

from odoo import fields
from odoo.exceptions import ValidationError

from odoo.addons.gobysend_automation.models.gobysend_message_dispatch import DispatchSteps

from .common import ChannelCase

HOOK_PATH = "/hooks/gobysend"
SECRET = "whsec-test-secret"


class TestWebhook(ChannelCase):
    def setUp(self):
        super().setUp()
        self.channel = self.create_channel(
            "webhook",
            "webhook",
            name="ERP",
            webhook_url=self.server.url + HOOK_PATH,
            webhook_secret=SECRET,
            webhook_headers='{"Authorization": "Bearer erp-token", "X-Tenant": "shop-a"}',
        )

    def test_signed_json_describes_contact_workspace_and_message(self):
        self.server.expect(HOOK_PATH, 202, json={"id": "erp-evt-1"})
        started = int(time.time())
        message = self.send(self.channel, body="Khách {{ contact.name }} cần gọi lại", subject="Gọi lại")
        self.assertSent(message, "erp-evt-1")
        (request,) = self.server.requests
        self.assertEqual((request.method, request.target), ("POST", HOOK_PATH))
        self.assertEqual(request.headers["Content-Type"], "application/json")
        self.assertEqual(request.headers["Authorization"], "Bearer erp-token")
        self.assertEqual(request.headers["X-Tenant"], "shop-a")
        self.assertEqual(request.headers["X-Gobysend-Message-Id"], str(message.id))

        # The receiver's check: HMAC-SHA256 of "<t>.<raw body>" with the shared secret.
        parts = dict(part.split("=", 1) for part in request.headers["X-Gobysend-Signature"].split(","))
        self.assertLessEqual(abs(int(parts["t"]) - started), 5)
        expected = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + request.body, hashlib.sha256).hexdigest()
        self.assertEqual(parts["v1"], expected)

        payload = request.json()
        self.assertEqual(payload["type"], "message")
        self.assertEqual(payload["id"], str(message.id))
        self.assertEqual(payload["workspace"], {"id": self.workspace_a.id, "name": "Shop A"})
        self.assertEqual(payload["channel"], {"id": self.channel.id, "name": "ERP", "type": "webhook"})
        self.assertEqual(
            {key: payload["contact"][key] for key in ("id", "customer_id", "name", "email", "phone")},
            {
                "id": self.contact.id,
                "customer_id": "C-1",
                "name": "Nguyễn Thị Lan",
                "email": "lan@example.com",
                "phone": "0912 345 678",
            },
        )
        self.assertEqual(
            payload["message"],
            {
                "id": message.id,
                "subject": "Gọi lại",
                "body": "Khách Nguyễn Thị Lan cần gọi lại",
                "origin": None,
                "is_test": False,
            },
        )
        self.assertRegex(payload["sent_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    def test_answer_without_id_gets_a_local_one(self):
        self.server.expect(HOOK_PATH, 204)
        message = self.send(self.channel)
        self.assertSent(message, f"webhook-{message.id}")

    def test_gone_endpoint_fails_and_server_error_retries(self):
        self.server.expect(HOOK_PATH, 410, text="gone")
        self.assertFailed(self.send(self.channel), "HTTP 410")
        self.server.expect(HOOK_PATH, 500, text="oops")
        self.assertRetriedLater(self.send(self.channel))

    def test_redirects_are_not_followed(self):
        self.server.expect(HOOK_PATH, 302, headers={"Location": self.server.url + "/elsewhere"})
        self.assertFailed(self.send(self.channel), "redirect")
        self.assertEqual([request.path for request in self.server.requests], [HOOK_PATH])

    def test_extra_headers_are_checked(self):
        for headers in (
            "not json",
            '["a"]',
            '{"X-Count": 3}',
            '{"X-Gobysend-Signature": "forged"}',
            '{"X-A": "b\\r\\nX-B: c"}',
        ):
            with self.assertRaises(ValidationError, msg=headers):
                self.channel.webhook_headers = headers
        self.channel.webhook_headers = json.dumps({"X-Api-Key": "k"})

    def test_each_channel_gets_its_own_secret(self):
        other = self.channel.copy()
        self.assertTrue(other.webhook_secret)
        self.assertNotEqual(other.webhook_secret, self.channel.webhook_secret)

    def subscribed_contacts(self, count):
        contacts = self.env["res.partner"].create([{"name": f"Contact {index}"} for index in range(count)])
        self.env["gobysend.subscription"].create(
            [{"workspace_id": self.workspace_a.id, "partner_id": contact.id} for contact in contacts]
        )
        return contacts

    def test_a_batch_is_sent_side_by_side_each_message_with_its_own_outcome(self):
        """One dispatch of many messages keeps up to ``max_parallel_requests`` requests in flight;
        each message still gets the answer to its own request."""
        self.channel.max_parallel_requests = 3
        contacts = self.subscribed_contacts(7)
        for _index in range(5):
            self.server.expect(HOOK_PATH, 200, json={}, delay=0.3)
        self.server.expect(HOOK_PATH, 410, text="gone", delay=0.3)
        self.server.expect(HOOK_PATH, 503, text="busy", delay=0.3)
        Message = self.env["gobysend.message"]
        messages = Message.concat(
            *(Message._enqueue(contact, self.channel, "Hi {{ contact.name }}") for contact in contacts)
        )
        balance = self.workspace_a.token_balance
        messages._dispatch()
        self.assertEqual(self.server.max_in_flight, 3)
        self.assertEqual(len(self.server.requests), 7)
        bodies = {request.headers["X-Gobysend-Message-Id"]: request.json() for request in self.server.requests}
        self.assertEqual(sorted(bodies), sorted(str(message.id) for message in messages))
        for message in messages:
            self.assertEqual(bodies[str(message.id)]["message"]["body"], f"Hi {message.partner_id.name}")
        self.assertEqual(sorted(messages.mapped("state")), ["failed", "queued"] + ["sent"] * 5)
        for message in messages.filtered(lambda m: m.state == "sent"):
            self.assertEqual(message.provider_message_id, f"webhook-{message.id}")
        # Only the five that went out are paid for.
        self.assertEqual(self.workspace_a.token_balance, balance - 5)

    def test_no_request_leaves_before_its_slice_is_handed_over(self):
        """The dispatcher commits each slice as handed over before its first request goes out,
        while earlier slices may still be in flight."""
        self.channel.max_parallel_requests = 2
        contacts = self.subscribed_contacts(6)
        for _index in range(6):
            self.server.expect(HOOK_PATH, 200, json={}, delay=0.2)
        Message = self.env["gobysend.message"]
        messages = Message.concat(*(Message._enqueue(contact, self.channel, "Hi") for contact in contacts))
        handed_over = []
        test = self

        class Steps(DispatchSteps):
            def slice_size(self, channel, messages):
                return channel.max_parallel_requests

            def hand_over(self, part):
                handed = DispatchSteps.hand_over(self, part)
                sent_ids = {request.headers["X-Gobysend-Message-Id"] for request in test.server.requests}
                left_early = sent_ids & {str(message.id) for message in part}
                test.assertFalse(left_early, "a request left before its hand-over")
                test.assertTrue(all(part.mapped("handed_over_at")))
                handed_over.append(part)
                return handed

        now = fields.Datetime.now()
        messages.sudo()._dispatch_batch(now, Steps(now))
        self.assertEqual([len(part) for part in handed_over], [2, 2, 2])
        self.assertEqual(set(messages.mapped("state")), {"sent"})
        self.assertEqual(len(self.server.requests), 6)
