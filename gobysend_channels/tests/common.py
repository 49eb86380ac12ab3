import datetime

from odoo import fields
from odoo.tests import tagged

from odoo.addons.gobysend_automation.tests.common import GobysendCase, GobysendHttpCase

from .provider_server import ProviderServer


class ChannelCaseMixin:
    """A subscribed Vietnamese contact, a funded workspace without quiet hours, and a local
    server standing in for the provider's API. The server listens on 127.0.0.1, which requests
    reach because the base class lists the loopback networks in the system parameter an Odoo
    administrator would set (``LOCAL_TEST_NETWORKS``); a test that removes it sees them refused."""

    @classmethod
    def _setup_contact(cls):
        cls.workspace_a.write({"token_balance": 100, "quiet_hours_start": 0, "quiet_hours_end": 0})
        cls.contact = cls.env["res.partner"].create(
            {"name": "Nguyễn Thị Lan", "email": "lan@example.com", "phone": "0912 345 678", "tz": "Asia/Ho_Chi_Minh"}
        )
        cls.subscription = cls.env["gobysend.subscription"].create(
            {"workspace_id": cls.workspace_a.id, "partner_id": cls.contact.id, "external_id": "C-1"}
        )

    def start_server(self):
        server = ProviderServer().__enter__()
        self.addCleanup(server.__exit__, None, None, None)
        return server

    def create_channel(self, provider, channel_type, **values):
        return self.env["gobysend.channel"].create(
            dict(
                {
                    "name": provider.title(),
                    "workspace_id": self.workspace_a.id,
                    "channel_type": channel_type,
                    "provider": provider,
                    "state": "enabled",
                    "token_cost": 1,
                },
                **values,
            )
        )

    def send(self, channel, body="Xin chào {{ contact.first_name }}", subject=None, partner=None):
        """Enqueue one message on ``channel`` and dispatch it now; return it."""
        message = self.env["gobysend.message"]._enqueue(partner or self.contact, channel, body, subject=subject)
        self.dispatched_at = fields.Datetime.now()
        message._dispatch()
        return message

    def assertSent(self, message, provider_message_id):
        self.assertEqual(message.state, "sent", message.reason)
        self.assertEqual(message.provider_message_id, provider_message_id)

    def assertFailed(self, message, *fragments):
        """The message failed for good, its tokens were refunded, and the reason names ``fragments``."""
        self.assertEqual(message.state, "failed", message.reason)
        for fragment in fragments:
            self.assertIn(fragment, message.reason)
        self.assertFalse(message.provider_message_id)
        self.assertEqual(self.workspace_a.token_balance, 100, "a failed message costs nothing")

    def assertRetriedLater(self, message, at_least_seconds=60):
        """The message (just sent with ``send``) is queued again for an attempt at least
        ``at_least_seconds`` later, and its tokens were refunded."""
        self.assertEqual(message.state, "queued", message.reason)
        self.assertEqual(message.attempts, 1)
        self.assertTrue(message.reason)
        self.assertGreaterEqual(
            message.next_attempt_at, self.dispatched_at + datetime.timedelta(seconds=at_least_seconds)
        )
        self.assertLess(
            message.next_attempt_at, self.dispatched_at + datetime.timedelta(seconds=at_least_seconds * 1.5)
        )
        self.assertEqual(self.workspace_a.token_balance, 100, "the failed attempt was refunded")


@tagged("time_sensitive")
class ChannelCase(ChannelCaseMixin, GobysendCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_contact()

    def setUp(self):
        super().setUp()
        self.server = self.start_server()


@tagged("time_sensitive")
class ChannelHttpCase(ChannelCaseMixin, GobysendHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_contact()
