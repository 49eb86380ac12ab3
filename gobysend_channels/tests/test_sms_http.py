import json

from odoo.exceptions import ValidationError

from .common import ChannelCase
from .provider_server import ProviderServer


class TestSmsHttpGateway(ChannelCase):
    def setUp(self):
        super().setUp()
        self.channel = self.create_channel(
            "sms_http",
            "sms",
            sender="SHOP",
            sms_http_url=f"{self.server.url}/api/v2/sms",
            sms_http_template=json.dumps(
                {
                    "messages": [{"destination": "{to}", "text": "{body}", "source": "{sender}"}],
                    "ref": "gbs-{message_id}",
                }
            ),
            sms_http_auth_header="X-Api-Key",
            sms_http_auth_value="gateway-key",
            sms_http_id_path="data.messages[0].id",
        )

    def test_json_template_is_filled_and_the_id_read_from_the_answer(self):
        self.server.expect("/api/v2/sms", json={"data": {"messages": [{"id": "gw-77", "status": "accepted"}]}})
        message = self.send(self.channel)
        self.assertSent(message, "gw-77")
        (request,) = self.server.requests
        self.assertEqual((request.method, request.target), ("POST", "/api/v2/sms"))
        self.assertEqual(request.headers["X-Api-Key"], "gateway-key")
        self.assertEqual(request.headers["Content-Type"], "application/json")
        self.assertEqual(
            request.json(),
            {
                "messages": [{"destination": "+84912345678", "text": "Xin chào Lan", "source": "SHOP"}],
                "ref": f"gbs-{message.id}",
            },
        )

    def test_message_text_cannot_change_the_request(self):
        # Quotes and placeholders in the message are text, never structure or a second substitution.
        self.server.expect("/api/v2/sms", json={"data": {"messages": [{"id": "gw-78"}]}})
        self.send(self.channel, body='Code {to}", "source": "EVIL" {{ contact.name }}')
        sent = self.server.requests[0].json()["messages"][0]
        self.assertEqual(sent["text"], 'Code {to}", "source": "EVIL" Nguyễn Thị Lan')
        self.assertEqual(sent["source"], "SHOP")

    def test_form_fields_with_national_numbers_and_a_success_flag(self):
        self.channel.write(
            {
                "sms_http_encoding": "form",
                "sms_http_template": '{"phone": "{to}", "message": "{body}"}',
                "sms_http_phone_format": "national",
                "sms_http_success_path": "status",
                "sms_http_success_value": "success",
                "sms_http_id_path": "msgid",
            }
        )
        self.server.expect("/api/v2/sms", json={"status": "success", "msgid": 991})
        self.assertSent(self.send(self.channel), "991")
        request = self.server.requests[0]
        self.assertEqual(request.headers["Content-Type"], "application/x-www-form-urlencoded")
        self.assertEqual(request.form(), {"phone": ["0912345678"], "message": ["Xin chào Lan"]})

    def test_gateway_that_says_no_in_a_200_fails(self):
        self.channel.write({"sms_http_success_path": "status", "sms_http_success_value": "success"})
        self.server.expect("/api/v2/sms", json={"status": "error", "error": "invalid destination"})
        message = self.send(self.channel)
        self.assertFailed(message)
        self.assertIn("invalid destination", message.provider_answer)

    def test_get_with_query_string_and_placeholders_in_the_url(self):
        self.channel.write(
            {
                "sms_http_method": "GET",
                "sms_http_encoding": "query",
                "sms_http_url": f"{self.server.url}/send/{{to}}",
                "sms_http_template": '{"msg": "{body}", "phone": "{to}"}',
                "sms_http_phone_format": "international",
                "sms_http_id_path": False,
            }
        )
        self.server.expect("/send/84912345678", text="OK")
        message = self.send(self.channel)
        self.assertSent(message, f"sms-http-{message.id}")
        request = self.server.requests[0]
        self.assertEqual(request.method, "GET")
        self.assertEqual(request.query, {"msg": ["Xin chào Lan"], "phone": ["84912345678"]})

    def test_answer_without_the_id_fails(self):
        self.server.expect("/api/v2/sms", json={"data": {"messages": []}})
        self.assertFailed(self.send(self.channel), "data.messages[0].id")

    def test_client_error_fails_and_rate_limit_retries(self):
        self.server.expect("/api/v2/sms", 400, json={"error": "bad number"})
        self.assertFailed(self.send(self.channel), "HTTP 400")
        self.server.expect("/api/v2/sms", 429, json={"error": "slow down"}, headers={"Retry-After": "30"})
        self.assertRetriedLater(self.send(self.channel), at_least_seconds=30)

    def test_unreachable_gateway_retries_later(self):
        with ProviderServer() as gone:
            url = gone.url
        # Nothing listens there any more: the connection is refused.
        self.channel.sms_http_url = f"{url}/api/v2/sms"
        message = self.send(self.channel)
        self.assertRetriedLater(message)
        self.assertIn("Could not reach HTTP SMS gateway", message.reason)
        self.assertNotIn(" object at 0x", message.reason)
        self.assertNotIn(url, message.reason)

    def test_gateway_that_takes_the_request_but_answers_too_late_is_not_sent_again(self):
        # Odoo's test harness raises every timeout below 10 seconds to 10 seconds.
        self.channel.request_timeout = 1
        self.server.expect("/api/v2/sms", json={"data": {"messages": [{"id": "late"}]}}, delay=11)
        message = self.send(self.channel)
        # The gateway has the request and may send the SMS: another attempt could send it twice.
        self.assertFailed(message, "did not answer", "may or may not have arrived")
        self.assertEqual(len(self.server.requests), 1)
        self.env["gobysend.message"]._cron_dispatch()
        self.assertEqual(message.state, "failed")

    def test_template_must_be_a_json_object(self):
        for template in ('{"to": "{to}"', '["{to}"]'):
            with self.assertRaises(ValidationError):
                self.channel.sms_http_template = template
        with self.assertRaises(ValidationError):
            self.channel.write({"sms_http_encoding": "form", "sms_http_template": '{"to": {"nested": "{to}"}}'})
        with self.assertRaises(ValidationError):
            self.channel.sms_http_method = "GET"
