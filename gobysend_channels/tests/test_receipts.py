import base64
import datetime
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

from freezegun import freeze_time

from odoo import fields

from odoo.addons.gobysend_channels.utils import SignatureError

from .common import ChannelCase, ChannelHttpCase

SECRET = "receipt-secret-for-tests"
TWILIO_TOKEN = "twilio-auth-token-123"


def sign(body, timestamp=None, secret=SECRET):
    """The receiver-side signature, computed independently of the addon."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class ReceiptSetup:
    @classmethod
    def _setup_receipts(cls):
        Channel = cls.env["gobysend.channel"]
        cls.channel = Channel.create(
            {
                "name": "Twilio",
                "workspace_id": cls.workspace_a.id,
                "channel_type": "sms",
                "provider": "twilio",
                "state": "enabled",
                "twilio_account_sid": "AC123",
                "twilio_auth_token": TWILIO_TOKEN,
                "receipt_secret": SECRET,
            }
        )
        cls.other_channel = Channel.create(
            {
                "name": "Other",
                "workspace_id": cls.workspace_a.id,
                "channel_type": "sms",
                "receipt_secret": "other-secret",
            }
        )
        cls.message = cls.sent_message(cls.channel, "SM-1")
        cls.other_message = cls.sent_message(cls.other_channel, "SM-2")

    @classmethod
    def sent_message(cls, channel, provider_message_id):
        message = cls.env["gobysend.message"]._enqueue(cls.contact, channel, "Hello")
        # As the dispatcher leaves a message the provider accepted.
        message.write({"state": "sent", "provider_message_id": provider_message_id, "sent_at": fields.Datetime.now()})
        return message

    def events(self, name=None):
        domain = [("partner_id", "=", self.contact.id), ("name", "like", "message_%")]
        if name:
            domain.append(("name", "=", name))
        return self.env["gobysend.event"].search(domain)


class TestReceiptEndpoint(ReceiptSetup, ChannelHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_receipts()

    def post(self, payload, channel=None, signature=None, raw=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        headers["X-Gobysend-Signature"] = signature if signature is not None else sign(body)
        response = self.url_open(f"/gobysend/receipts/{(channel or self.channel).id}", data=body, headers=headers)
        self.env.invalidate_all()
        return response

    def assertNothingChanged(self):
        self.assertEqual(self.message.state, "sent")
        self.assertFalse(self.events())
        self.assertFalse(self.env["gobysend.receipt"].search([("channel_id", "=", self.channel.id)]))

    def test_delivered_receipt_moves_the_message_and_records_an_event(self):
        response = self.post({"id": "evt-1", "provider_message_id": "SM-1", "status": "delivered"})
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json(), {"received": 1, "applied": 1, "unknown": []})
        self.assertEqual(self.message.state, "delivered")
        event = self.events()
        self.assertEqual(event.name, "message_delivered")
        self.assertEqual(event.workspace_id, self.workspace_a)
        self.assertEqual(
            event.properties, {"message_id": self.message.id, "channel": "sms", "channel_id": self.channel.id}
        )

    def test_engagement_batch_with_timestamps_and_link(self):
        response = self.post(
            [
                {"id": "e1", "provider_message_id": "SM-1", "status": "delivered", "timestamp": "2026-11-23T03:00:00Z"},
                {"id": "e2", "provider_message_id": "SM-1", "status": "opened", "timestamp": 1795402900},
                {
                    "id": "e3",
                    "provider_message_id": "SM-1",
                    "status": "clicked",
                    "url": "https://shop.example.com/sale",
                },
                {"id": "e4", "provider_message_id": "SM-404", "status": "opened"},
            ]
        )
        self.assertEqual(response.json(), {"received": 4, "applied": 3, "unknown": ["SM-404"]})
        self.assertEqual(self.message.state, "clicked")
        self.assertEqual(
            sorted(self.events().mapped("name")), ["message_clicked", "message_delivered", "message_opened"]
        )
        self.assertEqual(self.events("message_delivered").timestamp, datetime.datetime(2026, 11, 23, 3, 0))
        self.assertEqual(self.events("message_clicked").properties["url"], "https://shop.example.com/sale")

    def test_late_receipt_never_moves_a_message_back(self):
        self.post({"id": "e1", "provider_message_id": "SM-1", "status": "clicked"})
        self.post({"id": "e2", "provider_message_id": "SM-1", "status": "delivered"})
        self.assertEqual(self.message.state, "clicked")
        self.assertEqual(len(self.events()), 2, "the event is still recorded")

    def test_same_event_id_is_recorded_once(self):
        payload = {"id": "evt-9", "provider_message_id": "SM-1", "status": "opened"}
        self.post(payload)
        # The provider retries the same event with a fresh signature.
        self.assertEqual(
            self.post(payload, signature=sign(json.dumps(payload).encode(), time.time() + 1)).status_code, 200
        )
        self.assertEqual(len(self.events("message_opened")), 1)

    def test_bounce_marks_the_consent_as_bounced(self):
        self.post({"id": "b1", "provider_message_id": "SM-1", "status": "bounced", "reason": "Unknown subscriber"})
        self.assertEqual((self.message.state, self.message.reason), ("bounced", "Unknown subscriber"))
        self.assertEqual(self.subscription.sms_state, "bounced")
        self.assertEqual(self.events().name, "message_bounced")

    def test_failure_after_sending(self):
        self.post({"id": "f1", "provider_message_id": "SM-1", "status": "failed", "reason": "Carrier rejected"})
        self.assertEqual((self.message.state, self.message.reason), ("failed", "Carrier rejected"))
        self.assertEqual(self.events().name, "message_failed")

    def test_invalid_signature_is_refused_and_changes_nothing(self):
        body = json.dumps({"provider_message_id": "SM-1", "status": "delivered"}).encode()
        for signature in (
            "",
            "garbage",
            sign(body, secret="wrong-secret"),
            sign(body + b" "),
            sign(body).replace("v1=", "v1=0"),
            # Characters no signature has (sent as Latin-1, as HTTP headers are): refused, not a 500.
            sign(body).replace("v1=", "v1=\u00e9"),
            "t=\u00e9,v1=\u00e9\u00e9",
        ):
            response = self.post(None, raw=body, signature=signature)
            self.assertEqual(response.status_code, 401, signature)
        self.assertNothingChanged()

    def test_stale_and_future_timestamps_are_refused(self):
        body = json.dumps({"provider_message_id": "SM-1", "status": "delivered"}).encode()
        # Well past the 300-second window, so that a slow request cannot bring them back inside it.
        for offset in (-330, 330, -3600):
            response = self.post(None, raw=body, signature=sign(body, time.time() + offset))
            self.assertEqual(response.status_code, 401)
            self.assertEqual(response.json()["error"], "stale_timestamp")
        self.assertNothingChanged()

    def test_replayed_request_is_refused(self):
        body = json.dumps({"provider_message_id": "SM-1", "status": "opened"}).encode()
        signature = sign(body)
        self.assertEqual(self.post(None, raw=body, signature=signature).status_code, 200)
        replay = self.post(None, raw=body, signature=signature)
        self.assertEqual(replay.status_code, 409)
        self.assertEqual(replay.json()["error"], "replayed")
        self.assertEqual(len(self.events()), 1)

    def test_malformed_receipts_are_refused_before_anything_is_stored(self):
        for payload in (
            {"provider_message_id": "SM-1", "status": "exploded"},
            {"status": "delivered"},
            {"provider_message_id": "SM-1", "status": "delivered", "timestamp": "yesterday"},
            {"provider_message_id": "SM-1", "status": "failed", "reason": "nul\u0000byte"},
            ["not an object"],
        ):
            response = self.post(payload)
            self.assertEqual(response.status_code, 400, payload)
        self.assertEqual(self.post(None, raw=b"{not json").status_code, 400)
        self.assertNothingChanged()

    def test_a_channel_secret_only_reaches_its_own_messages(self):
        # Signed with the first channel's secret, sent to the other channel's URL: refused.
        self.assertEqual(
            self.post({"provider_message_id": "SM-2", "status": "delivered"}, channel=self.other_channel).status_code,
            401,
        )
        # Signed right, but naming a message of another channel: not applied.
        response = self.post({"provider_message_id": "SM-2", "status": "delivered"})
        self.assertEqual(response.json()["unknown"], ["SM-2"])
        self.assertEqual(self.other_message.state, "sent")

    def test_unknown_channel(self):
        response = self.url_open("/gobysend/receipts/999999", data=b"{}", headers={"X-Gobysend-Signature": sign(b"{}")})
        self.assertEqual(response.status_code, 404)


class TestTwilioStatusCallback(ReceiptSetup, ChannelHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_receipts()

    def callback(self, params, token=TWILIO_TOKEN, signature=None):
        path = f"/gobysend/receipts/{self.channel.id}/twilio"
        url = self.base_url() + path
        if signature is None:
            # Twilio's algorithm: URL, then each parameter sorted by name as name + value; HMAC-SHA1, base64.
            data = url + "".join(key + params[key] for key in sorted(params))
            signature = base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()
        response = self.url_open(
            path,
            data=urlencode(params),
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
        )
        self.env.invalidate_all()
        return response

    def twilio_params(self, status, **extra):
        return dict(
            {
                "AccountSid": "AC123",
                "ApiVersion": "2010-04-01",
                "From": "+15017122661",
                "MessageSid": "SM-1",
                "MessageStatus": status,
                "SmsSid": "SM-1",
                "SmsStatus": status,
                "To": "+84912345678",
            },
            **extra,
        )

    def test_delivered_callback(self):
        response = self.callback(self.twilio_params("delivered"))
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(self.message.state, "delivered")
        self.assertEqual(self.events().name, "message_delivered")

    def test_undelivered_callback_fails_the_message_with_the_error_code(self):
        self.callback(self.twilio_params("undelivered", ErrorCode="30003"))
        self.assertEqual(self.message.state, "failed")
        self.assertIn("30003", self.message.reason)

    def test_intermediate_statuses_change_nothing(self):
        self.assertEqual(self.callback(self.twilio_params("sent")).status_code, 200)
        self.assertEqual(self.message.state, "sent")
        self.assertFalse(self.events())

    def test_wrong_signature_is_refused(self):
        self.assertEqual(self.callback(self.twilio_params("delivered"), token="not-the-token").status_code, 401)
        self.assertEqual(self.callback(self.twilio_params("delivered"), signature="").status_code, 401)
        self.assertEqual(self.callback(self.twilio_params("delivered"), signature="\u00e9" * 28).status_code, 401)
        self.assertEqual(self.message.state, "sent")
        self.assertFalse(self.events())

    def test_replayed_callback_is_refused(self):
        self.assertEqual(self.callback(self.twilio_params("delivered")).status_code, 200)
        self.assertEqual(self.callback(self.twilio_params("delivered")).status_code, 409)
        self.assertEqual(len(self.events()), 1)


class TestSignatureWindow(ReceiptSetup, ChannelCase):
    """The five-minute window, to the second, with a frozen clock."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_receipts()

    def process(self, body, signed_at, received_at):
        with freeze_time(received_at):
            try:
                return self.channel._process_signed_receipts(body, sign(body, signed_at.timestamp()))
            except SignatureError as error:
                return error.code

    def test_window_edges(self):
        signed_at = datetime.datetime(2026, 11, 23, 3, 0, tzinfo=datetime.UTC)
        for index, (seconds, expected) in enumerate(
            ((0, None), (300, None), (-300, None), (301, "stale_timestamp"), (-301, "stale_timestamp"))
        ):
            body = json.dumps({"id": f"w{index}", "provider_message_id": "SM-1", "status": "opened"}).encode()
            result = self.process(body, signed_at, signed_at + datetime.timedelta(seconds=seconds))
            if expected:
                self.assertEqual(result, expected, seconds)
            else:
                self.assertEqual(result["applied"], 1, seconds)
        self.assertEqual(len(self.events("message_opened")), 3)
