import json

from odoo.exceptions import ValidationError

from odoo.addons.gobysend_automation.exceptions import PROVIDER_ANSWER_MAX_LENGTH, PermanentSendError
from odoo.addons.gobysend_automation.transport import ALLOWED_NETWORKS_PARAMETER, MAX_ANSWER_BYTES

from .common import ChannelCase

HOOK_PATH = "/hooks/gobysend"


class TestOutboundDestinations(ChannelCase):
    """A URL a manager sets cannot reach the server's own network unless an administrator allows
    it; the local provider server of these tests is such a network."""

    def setUp(self):
        super().setUp()
        self.channel = self.create_channel(
            "webhook", "webhook", name="ERP", webhook_url=f"http://localhost:{self.server.server_address[1]}{HOOK_PATH}"
        )

    def forbid_local_networks(self):
        self.env["ir.config_parameter"].set_param(ALLOWED_NETWORKS_PARAMETER, "")

    def test_a_name_resolving_to_loopback_fails_with_the_reason(self):
        self.forbid_local_networks()
        self.server.expect(HOOK_PATH, 202, json={"id": "erp-evt-1"})
        message = self.send(self.channel)
        # Failed for good, not retried: no later attempt can reach it either.
        self.assertFailed(message, "Channel ERP may not call localhost", "loopback", ALLOWED_NETWORKS_PARAMETER)
        self.assertRegex(message.reason, r"resolves to (127\.0\.0\.1|::1)")
        self.assertEqual(message.attempts, 1)
        self.assertEqual(self.server.requests, [], "nothing reached the local server")

    def test_allowed_network_is_reached(self):
        self.server.expect(HOOK_PATH, 202, json={"id": "erp-evt-1"})
        self.assertSent(self.send(self.channel), "erp-evt-1")

    def test_the_channels_send_test_shows_the_refusal(self):
        self.forbid_local_networks()
        self.channel.write({"state": "test", "test_partner_id": self.contact.id})
        action = self.channel.action_send_test()
        self.commit_request()
        message = self.env["gobysend.message"].browse(action["res_id"])
        message.invalidate_recordset()
        self.assertEqual(message.state, "failed")
        self.assertIn("may not call localhost", message.reason)
        self.assertEqual(self.server.requests, [])

    def test_every_provider_url_is_checked(self):
        """The generic SMS gateway's GET with a query string goes out through ``requests``, the
        webhook's POST through the lean transport: both are refused alike."""
        self.forbid_local_networks()
        gateway = self.create_channel(
            "sms_http",
            "sms",
            sms_http_url=f"{self.server.url}/send",
            sms_http_method="GET",
            sms_http_encoding="query",
            sms_http_template=json.dumps({"to": "{to}", "text": "{body}"}),
        )
        message = self.send(gateway)
        self.assertFailed(message, "may not call 127.0.0.1, a loopback address", ALLOWED_NETWORKS_PARAMETER)
        self.assertEqual(self.server.requests, [])

    def test_an_oversized_answer_fails_without_being_kept(self):
        self.server.expect(HOOK_PATH, 200, text="x" * (MAX_ANSWER_BYTES + 1))
        message = self.send(self.channel)
        # The request went out: a retry could deliver it twice, so it fails and a manager checks.
        self.assertFailed(message, "answered with more than 1024 KiB")
        self.assertEqual(len(self.server.requests), 1)
        self.assertFalse(message.provider_answer)

    def test_the_answer_kept_on_a_message_is_bounded(self):
        error = PermanentSendError("refused", "y" * (PROVIDER_ANSWER_MAX_LENGTH * 10))
        self.assertLessEqual(len(error.provider_answer), PROVIDER_ANSWER_MAX_LENGTH + 1)
        self.server.expect(HOOK_PATH, 400, text="z" * (MAX_ANSWER_BYTES // 2))
        message = self.send(self.channel)
        self.assertFailed(message, "HTTP 400")
        self.assertLessEqual(len(message.provider_answer), PROVIDER_ANSWER_MAX_LENGTH + 1)

    def test_allowed_networks_are_read_from_the_cache(self):
        channels = self.env["gobysend.channel"]
        self.assertTrue(channels._get_outbound_allowed_networks())
        with self.assertQueryCount(0):
            channels._get_outbound_allowed_networks()
        self.forbid_local_networks()
        self.assertEqual(channels._get_outbound_allowed_networks(), ())

    def test_the_parameter_must_list_networks(self):
        parameters = self.env["ir.config_parameter"]
        with self.assertRaisesRegex(ValidationError, "'intranet' in gobysend.outbound_allowed_networks"):
            parameters.set_param(ALLOWED_NETWORKS_PARAMETER, "10.0.0.0/8, intranet")
        parameters.set_param(ALLOWED_NETWORKS_PARAMETER, "10.0.0.0/8, 192.168.1.20, fd00::/8")
