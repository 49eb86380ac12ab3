import base64

from odoo.exceptions import AccessError, ValidationError

from .common import ChannelCase

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "twilio-auth-token-123"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def twilio_message(sid="SM1f0e8ae6ade43cb3c0ce4525424e404f", to="+84912345678", body="Xin chào Lan"):
    """Twilio's 201 answer to a new message, as the API returns it."""
    return {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": "Mon, 23 Nov 2026 03:00:00 +0000",
        "date_sent": None,
        "date_updated": "Mon, 23 Nov 2026 03:00:00 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": "+15017122661",
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"},
        "to": to,
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
    }


class TestTwilio(ChannelCase):
    def setUp(self):
        super().setUp()
        self.channel = self.create_channel(
            "twilio",
            "sms",
            sender="+15017122661",
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_base_url=self.server.url,
        )

    def test_message_is_posted_with_basic_auth_and_form_fields(self):
        self.server.expect(MESSAGES_PATH, 201, json=twilio_message())
        message = self.send(self.channel)
        self.assertSent(message, "SM1f0e8ae6ade43cb3c0ce4525424e404f")
        self.assertEqual(self.workspace_a.token_balance, 99)
        (request,) = self.server.requests
        self.assertEqual(request.method, "POST")
        self.assertEqual(request.target, MESSAGES_PATH)
        expected_auth = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        self.assertEqual(request.headers["Authorization"], expected_auth)
        self.assertEqual(request.headers["Content-Type"], "application/x-www-form-urlencoded")
        # The contact's national number, in E.164 as Twilio wants it.
        self.assertEqual(request.form(), {"To": ["+84912345678"], "From": ["+15017122661"], "Body": ["Xin chào Lan"]})

    def test_messaging_service_and_status_callback(self):
        self.channel.write(
            {"twilio_messaging_service_sid": "MG9752274e9e519418a7406176694466fa", "twilio_status_callback": True}
        )
        self.server.expect(MESSAGES_PATH, 201, json=twilio_message(sid="SM2"))
        self.assertSent(self.send(self.channel), "SM2")
        form = self.server.requests[0].form()
        self.assertEqual(form["MessagingServiceSid"], ["MG9752274e9e519418a7406176694466fa"])
        self.assertNotIn("From", form)
        self.assertEqual(
            form["StatusCallback"], [f"{self.channel.get_base_url()}/gobysend/receipts/{self.channel.id}/twilio"]
        )

    def test_invalid_number_fails_for_good(self):
        self.server.expect(
            MESSAGES_PATH,
            400,
            json={
                "code": 21211,
                "message": "The 'To' number +84912345678 is not a valid phone number.",
                "more_info": "https://www.twilio.com/docs/errors/21211",
                "status": 400,
            },
        )
        message = self.send(self.channel)
        self.assertFailed(message, "21211", "not a valid phone number")
        self.assertIn('"code": 21211', message.provider_answer)
        self.assertNotIn(AUTH_TOKEN, message.provider_answer)

    def test_rate_limit_retries_after_the_delay_twilio_asks(self):
        self.server.expect(
            MESSAGES_PATH,
            429,
            json={
                "code": 20429,
                "message": "Too Many Requests",
                "more_info": "https://www.twilio.com/docs/errors/20429",
                "status": 429,
            },
            headers={"Retry-After": "120"},
        )
        self.assertRetriedLater(self.send(self.channel), at_least_seconds=120)

    def test_server_error_retries_with_backoff(self):
        self.server.expect(MESSAGES_PATH, 503, text="Service Unavailable")
        message = self.send(self.channel)
        self.assertRetriedLater(message, at_least_seconds=60)
        self.assertIn("503", message.reason)

    def test_contact_without_valid_number_fails_without_calling_twilio(self):
        self.contact.phone = "12"
        self.assertEqual(self.send(self.channel).state, "failed")
        self.assertFalse(self.server.requests)

    def test_twilio_cannot_serve_email(self):
        with self.assertRaises(ValidationError):
            self.channel.channel_type = "email"

    def test_credentials_are_for_managers_only(self):
        with self.assertRaises(AccessError):
            self.channel.with_user(self.user_a).read(["twilio_auth_token"])
        self.assertNotIn("twilio_auth_token", self.channel.with_user(self.user_a).fields_get())
        self.assertEqual(
            self.channel.with_user(self.manager_a).read(["twilio_auth_token"])[0]["twilio_auth_token"], AUTH_TOKEN
        )
