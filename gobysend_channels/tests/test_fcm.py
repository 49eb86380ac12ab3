import base64
import json
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from odoo.exceptions import ValidationError

from .common import ChannelCase

PROJECT = "gobysend-test"
SEND_PATH = f"/v1/projects/{PROJECT}/messages:send"
TOKEN_PATH = "/token"


def b64decode(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def fcm_error(code, status, error_code, message, extra_details=()):
    """An FCM HTTP v1 error answer."""
    return {
        "error": {
            "code": code,
            "message": message,
            "status": status,
            "details": [
                {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code},
                *extra_details,
            ],
        }
    }


class TestFcm(ChannelCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.private_key_pem = cls.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        Device = cls.env["gobysend.device"]
        cls.phone = Device.create(
            {
                "workspace_id": cls.workspace_a.id,
                "partner_id": cls.contact.id,
                "token": "token-phone",
                "platform": "android",
            }
        )
        cls.browser = Device.create(
            {
                "workspace_id": cls.workspace_a.id,
                "partner_id": cls.contact.id,
                "token": "token-browser",
                "platform": "web",
            }
        )
        # Not to be used: archived, another contact's, another workspace's.
        Device.create(
            {
                "workspace_id": cls.workspace_a.id,
                "partner_id": cls.contact.id,
                "token": "token-old",
                "platform": "ios",
                "active": False,
            }
        )
        other = cls.env["res.partner"].create({"name": "Other"})
        Device.create(
            {"workspace_id": cls.workspace_a.id, "partner_id": other.id, "token": "token-other", "platform": "ios"}
        )
        Device.create(
            {"workspace_id": cls.workspace_b.id, "partner_id": cls.contact.id, "token": "token-b", "platform": "ios"}
        )

    def setUp(self):
        super().setUp()
        self.service_account = {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "key-id-1",
            "private_key": self.private_key_pem,
            "client_email": f"firebase-adminsdk@{PROJECT}.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "token_uri": self.server.url + TOKEN_PATH,
        }
        self.channel = self.create_channel(
            "fcm", "push", fcm_service_account=json.dumps(self.service_account), fcm_base_url=self.server.url
        )

    def expect_token(self, access_token="ya29.test-token"):
        self.server.expect(TOKEN_PATH, json={"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"})

    def expect_sent(self, count=1):
        for index in range(count):
            self.server.expect(
                SEND_PATH, json={"name": f"projects/{PROJECT}/messages/0:150041531445527{index}%31bd1c96"}
            )

    def sent_tokens(self):
        return [request.json()["message"]["token"] for request in self.server.requests_to(SEND_PATH)]

    def test_service_account_jwt_is_exchanged_and_every_active_device_gets_the_message(self):
        self.expect_token()
        self.expect_sent(2)
        started = int(time.time())
        message = self.send(self.channel, body="Đơn hàng đã giao", subject="Xin chào {{ contact.first_name }}")
        self.assertSent(message, f"projects/{PROJECT}/messages/0:1500415314455270%31bd1c96")

        token_request = self.server.requests[0]
        self.assertEqual((token_request.method, token_request.target), ("POST", TOKEN_PATH))
        form = token_request.form()
        self.assertEqual(form["grant_type"], ["urn:ietf:params:oauth:grant-type:jwt-bearer"])
        header, claims, signature = form["assertion"][0].split(".")
        # The JWT verifies with the service account's public key.
        self.private_key.public_key().verify(
            b64decode(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        self.assertEqual(json.loads(b64decode(header)), {"alg": "RS256", "typ": "JWT", "kid": "key-id-1"})
        claims = json.loads(b64decode(claims))
        self.assertEqual(claims["iss"], self.service_account["client_email"])
        self.assertEqual(claims["scope"], "https://www.googleapis.com/auth/firebase.messaging")
        self.assertEqual(claims["aud"], self.server.url + TOKEN_PATH)
        self.assertLessEqual(abs(claims["iat"] - started), 5)
        self.assertEqual(claims["exp"] - claims["iat"], 3600)

        sends = self.server.requests_to(SEND_PATH)
        self.assertEqual(len(sends), 2)
        for request in sends:
            self.assertEqual(request.headers["Authorization"], "Bearer ya29.test-token")
            self.assertEqual(request.headers["Content-Type"], "application/json")
        self.assertEqual(sorted(self.sent_tokens()), ["token-browser", "token-phone"])
        self.assertEqual(
            sends[0].json(),
            {
                "message": {
                    "token": sends[0].json()["message"]["token"],
                    "notification": {"title": "Xin chào Lan", "body": "Đơn hàng đã giao"},
                    "data": {"gobysend_message_id": str(message.id)},
                }
            },
        )

    def test_access_token_is_cached_until_it_expires(self):
        self.expect_token()
        self.expect_sent(4)
        self.send(self.channel)
        self.send(self.channel)
        self.assertEqual(len(self.server.requests_to(TOKEN_PATH)), 1)
        self.assertEqual(self.channel.fcm_access_token, "ya29.test-token")

    def test_unregistered_device_is_deactivated_and_the_others_still_served(self):
        self.browser.last_seen = "2020-01-01 00:00:00"  # the phone is tried first
        self.expect_token()
        self.expect_sent(1)
        self.server.expect(
            SEND_PATH, 404, json=fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
        )
        message = self.send(self.channel)
        self.assertEqual(message.state, "sent", message.reason)
        self.assertEqual(self.sent_tokens(), ["token-phone", "token-browser"])
        self.assertTrue(self.phone.active)
        self.assertFalse(self.browser.active)

    def test_bad_token_is_deactivated_and_no_device_left_fails(self):
        self.expect_token()
        self.server.expect(
            SEND_PATH, 404, json=fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
        )
        self.server.expect(
            SEND_PATH,
            400,
            json=fcm_error(
                400,
                "INVALID_ARGUMENT",
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}],
                    }
                ],
            ),
        )
        message = self.send(self.channel)
        self.assertFailed(message, "2 devices")
        self.assertFalse((self.phone | self.browser).filtered("active"))
        # The next message finds no device: skipped by the send-time rules, no call at all.
        calls = len(self.server.requests)
        self.assertEqual(self.send(self.channel).state, "skipped")
        self.assertEqual(len(self.server.requests), calls)

    def test_unavailable_service_retries_later(self):
        self.expect_token()
        for _device in range(2):
            self.server.expect(
                SEND_PATH,
                503,
                json=fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
            )
        self.assertRetriedLater(self.send(self.channel))
        self.assertTrue(self.phone.active and self.browser.active)

    def test_a_retry_goes_only_to_the_devices_that_failed(self):
        self.browser.last_seen = "2020-01-01 00:00:00"  # the phone is tried first
        self.expect_token()
        self.expect_sent(1)
        self.server.expect(
            SEND_PATH, 503, json=fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable.")
        )
        message = self.send(self.channel)
        self.assertRetriedLater(message)
        self.assertIn("Delivered to 1 device(s); 1 will be tried again", message.reason)
        self.assertEqual(self.sent_tokens(), ["token-phone", "token-browser"])

        self.server.expect(SEND_PATH, json={"name": f"projects/{PROJECT}/messages/browser-2"})
        message._dispatch()
        self.assertSent(message, f"projects/{PROJECT}/messages/0:1500415314455270%31bd1c96")
        # The phone got the message once; the browser, which failed once, got it on the retry.
        self.assertEqual(self.sent_tokens(), ["token-phone", "token-browser", "token-browser"])
        self.assertFalse(self.server.unexpected)

    def test_a_device_that_could_not_be_reached_does_not_resend_to_the_others(self):
        self.browser.last_seen = "2020-01-01 00:00:00"  # the phone is tried first
        self.expect_token()
        self.expect_sent(1)
        self.server.expect_dropped(SEND_PATH)
        message = self.send(self.channel)
        self.assertRetriedLater(message)
        self.assertIn("Delivered to 1 device(s); 1 will be tried again", message.reason)

        self.server.expect(SEND_PATH, json={"name": f"projects/{PROJECT}/messages/browser-2"})
        message._dispatch()
        self.assertSent(message, f"projects/{PROJECT}/messages/0:1500415314455270%31bd1c96")
        # The phone got the message once: only the browser, which could not be reached, is tried again.
        self.assertEqual(self.sent_tokens(), ["token-phone", "token-browser", "token-browser"])
        self.assertFalse(self.server.unexpected)

    def test_a_device_whose_answer_timed_out_leaves_the_delivery_to_the_others(self):
        self.browser.last_seen = "2020-01-01 00:00:00"  # the phone is tried first
        # Odoo's test harness raises every timeout below 10 seconds to 10 seconds.
        self.channel.request_timeout = 1
        self.expect_token()
        self.expect_sent(1)
        self.server.expect(SEND_PATH, json={"name": f"projects/{PROJECT}/messages/late"}, delay=11)
        message = self.send(self.channel)
        # The phone has it; the browser may have it too: nothing is sent again automatically.
        self.assertSent(message, f"projects/{PROJECT}/messages/0:1500415314455270%31bd1c96")
        self.assertEqual(self.sent_tokens(), ["token-phone", "token-browser"])

    def test_revoked_access_token_is_renewed_once(self):
        self.expect_token("ya29.first")
        self.server.expect(
            SEND_PATH,
            401,
            json={
                "error": {
                    "code": 401,
                    "message": "Request had invalid authentication credentials.",
                    "status": "UNAUTHENTICATED",
                }
            },
        )
        self.expect_token("ya29.second")
        self.expect_sent(2)
        self.assertEqual(self.send(self.channel).state, "sent")
        self.assertEqual(
            [request.headers["Authorization"] for request in self.server.requests_to(SEND_PATH)],
            ["Bearer ya29.first", "Bearer ya29.second", "Bearer ya29.second"],
        )

    def test_refused_service_account_fails(self):
        self.server.expect(
            TOKEN_PATH, 400, json={"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        )
        self.assertFailed(self.send(self.channel), "Invalid JWT Signature.")
        self.assertFalse(self.server.requests_to(SEND_PATH))

    def test_service_account_must_be_a_key_file(self):
        with self.assertRaises(ValidationError):
            self.channel.fcm_service_account = '{"type": "service_account"}'
        with self.assertRaises(ValidationError):
            self.channel.fcm_service_account = "not json"
