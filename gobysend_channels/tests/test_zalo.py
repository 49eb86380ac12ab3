import datetime

from odoo import fields
from odoo.exceptions import AccessError, ValidationError
from odoo.tests import freeze_time

from .common import ChannelCase

ZNS_PATH = "/message/template"
TOKEN_PATH = "/v4/oa/access_token"
BODY = '{"customer_name": "{{ contact.name }}", "order_code": "{{ order }}"}'


def zns_success(msg_id="a4a8bd6a1bb6bfe8e6f7"):
    return {
        "error": 0,
        "message": "Success",
        "data": {
            "msg_id": msg_id,
            "sent_time": "1795402800000",
            "quota": {"dailyQuota": "500", "remainingQuota": "499"},
        },
    }


class TestZalo(ChannelCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # A refreshed token is committed in a transaction of its own: in test mode that
        # transaction is a savepoint of the test's, which sees (and rolls back) the test's data.
        cls.registry.enter_test_mode(cls.cr)
        cls.addClassCleanup(cls.registry.leave_test_mode)

    def setUp(self):
        super().setUp()
        self.channel = self.create_channel(
            "zalo",
            "zalo",
            zalo_app_id="1234567890",
            zalo_app_secret="zalo-app-secret",
            zalo_access_token="current-access-token",
            zalo_refresh_token="current-refresh-token",
            zalo_token_expires_at=fields.Datetime.now() + datetime.timedelta(hours=20),
            zalo_template_id="231234",
            zalo_api_url=self.server.url,
            zalo_oauth_url=self.server.url,
        )

    def send_order(self, body=BODY):
        message = self.env["gobysend.message"]._enqueue(self.contact, self.channel, body, context={"order": "SO042"})
        self.dispatched_at = fields.Datetime.now()
        return message._dispatch()

    def test_template_message_is_posted_with_the_access_token(self):
        self.server.expect(ZNS_PATH, json=zns_success())
        message = self.send_order()
        self.assertSent(message, "a4a8bd6a1bb6bfe8e6f7")
        (request,) = self.server.requests
        self.assertEqual((request.method, request.target), ("POST", ZNS_PATH))
        self.assertEqual(request.headers["access_token"], "current-access-token")
        self.assertEqual(request.headers["Content-Type"], "application/json")
        self.assertEqual(
            request.json(),
            {
                "phone": "84912345678",
                "template_id": "231234",
                "template_data": {"customer_name": "Nguyễn Thị Lan", "order_code": "SO042"},
                "tracking_id": str(message.id),
            },
        )

    def test_body_may_choose_its_template(self):
        self.channel.zalo_development_mode = True
        self.server.expect(ZNS_PATH, json=zns_success("m2"))
        self.send_order('{"template_id": "999", "template_data": {"code": "{{ order }}"}}')
        sent = self.server.requests[0].json()
        self.assertEqual(
            (sent["template_id"], sent["template_data"], sent["mode"]), ("999", {"code": "SO042"}, "development")
        )

    def test_expired_token_is_refreshed_first_and_the_new_tokens_stored(self):
        self.channel.zalo_token_expires_at = fields.Datetime.now() - datetime.timedelta(minutes=1)
        # Zalo answers expires_in as a string.
        self.server.expect(
            TOKEN_PATH,
            json={"access_token": "new-access-token", "refresh_token": "new-refresh-token", "expires_in": "90000"},
        )
        self.server.expect(ZNS_PATH, json=zns_success())
        before = fields.Datetime.now()
        self.assertSent(self.send_order(), "a4a8bd6a1bb6bfe8e6f7")
        refresh, send = self.server.requests
        self.assertEqual((refresh.method, refresh.target), ("POST", TOKEN_PATH))
        self.assertEqual(refresh.headers["secret_key"], "zalo-app-secret")
        self.assertEqual(refresh.headers["Content-Type"], "application/x-www-form-urlencoded")
        self.assertEqual(
            refresh.form(),
            {"app_id": ["1234567890"], "refresh_token": ["current-refresh-token"], "grant_type": ["refresh_token"]},
        )
        self.assertEqual(send.headers["access_token"], "new-access-token")
        self.assertEqual(self.channel.zalo_access_token, "new-access-token")
        self.assertEqual(self.channel.zalo_refresh_token, "new-refresh-token")
        self.assertGreaterEqual(self.channel.zalo_token_expires_at, before + datetime.timedelta(seconds=90000))

    def test_token_about_to_expire_is_refreshed(self):
        self.channel.zalo_token_expires_at = fields.Datetime.now() + datetime.timedelta(minutes=2)
        self.server.expect(
            TOKEN_PATH, json={"access_token": "new-at", "refresh_token": "new-rt", "expires_in": "90000"}
        )
        self.server.expect(ZNS_PATH, json=zns_success())
        self.assertEqual(self.send_order().state, "sent")
        self.assertEqual([request.path for request in self.server.requests], [TOKEN_PATH, ZNS_PATH])

    def test_token_refused_before_its_expiry_is_refreshed_once(self):
        self.server.expect(ZNS_PATH, json={"error": -124, "message": "Access token is invalid"})
        self.server.expect(
            TOKEN_PATH, json={"access_token": "new-at", "refresh_token": "new-rt", "expires_in": "90000"}
        )
        self.server.expect(ZNS_PATH, json=zns_success("m3"))
        self.assertSent(self.send_order(), "m3")
        self.assertEqual(
            [(request.path, request.headers["access_token"]) for request in self.server.requests_to(ZNS_PATH)],
            [(ZNS_PATH, "current-access-token"), (ZNS_PATH, "new-at")],
        )

    def test_refused_refresh_token_fails_the_message(self):
        self.channel.zalo_token_expires_at = fields.Datetime.now() - datetime.timedelta(minutes=1)
        self.server.expect(
            TOKEN_PATH,
            json={
                "error_name": "Invalid parameter",
                "error_reason": "Invalid refresh token",
                "ref_doc": "https://developers.zalo.me/docs/official-account/bat-dau/xac-thuc-va-uy-quyen-cho-ung-dung-new",
                "error_description": "Invalid refresh token",
                "error": -14014,
            },
        )
        message = self.send_order()
        self.assertFailed(message, "Invalid refresh token", "authorize")
        self.assertFalse(self.server.requests_to(ZNS_PATH))
        self.assertNotIn("current-refresh-token", message.provider_answer or "")
        self.assertEqual(self.channel.zalo_refresh_token, "current-refresh-token")

    def test_invalid_phone_is_a_refusal(self):
        self.server.expect(ZNS_PATH, json={"error": -108, "message": "Phone number is invalid"})
        self.assertFailed(self.send_order(), "-108", "Phone number is invalid")

    def test_night_time_refusal_retries_in_the_morning(self):
        self.server.expect(ZNS_PATH, json={"error": -133, "message": "ZNS is not sent at night (22h-6h)"})
        # 03:00 in Vietnam (UTC+7, no daylight saving): a fixed night, not the one the test runs in.
        with freeze_time("2026-11-23 20:00:00"):
            message = self.send_order()
        self.assertEqual(message.state, "queued", message.reason)
        # The next 06:00 in Vietnam, in naive UTC.
        morning = datetime.datetime(2026, 11, 23, 23, 0)
        delay = morning - self.dispatched_at
        self.assertGreaterEqual(message.next_attempt_at, morning)
        self.assertLessEqual(message.next_attempt_at, morning + delay * 0.2 + datetime.timedelta(minutes=2))

    def test_server_error_retries(self):
        self.server.expect(ZNS_PATH, 500, text="Internal Server Error")
        self.assertRetriedLater(self.send_order())

    def test_body_that_is_not_a_json_template_is_refused(self):
        for body in ("Xin chào {{ contact.first_name }}", '{"name": {{ contact.name | tojson }}}', '["{{ order }}"]'):
            with self.subTest(body=body), self.assertRaises(ValidationError) as caught:
                self.send_order(body)
            self.assertIn("JSON object", str(caught.exception))
        self.assertFalse(self.server.requests)

    def test_contact_data_cannot_change_the_template_data(self):
        # A name written to break out of its JSON string and add a key of its own.
        self.contact.name = 'Lan", "order_code": "FREE'
        self.server.expect(ZNS_PATH, json=zns_success())
        self.assertSent(self.send_order(), "a4a8bd6a1bb6bfe8e6f7")
        self.assertEqual(
            self.server.requests[0].json()["template_data"],
            {"customer_name": 'Lan", "order_code": "FREE', "order_code": "SO042"},
        )

    def test_answers_are_classified_by_zalo_error_code(self):
        for code, message, expected in (
            (-118, "Zalo account not existed", "failed"),
            (-108, "Phone number invalid", "failed"),
            (-109, "Template ID invalid", "failed"),
            (-100, "Unknown error", "queued"),
            (-144, "OA has exceeded the daily quota", "queued"),
            (-99999, "Something new", "failed"),
        ):
            with self.subTest(code=code):
                self.server.expect(ZNS_PATH, json={"error": code, "message": message})
                result = self.send_order()
                self.assertEqual(result.state, expected, result.reason)
                self.assertIn(f"error {code}", result.reason)
                self.assertIn(message, result.reason)
        failed_for_setup = self.env["gobysend.message"].search(
            [("channel_id", "=", self.channel.id), ("reason", "like", "-109")]
        )
        self.assertIn("Check the Zalo app", failed_for_setup.reason)

    def test_daily_quota_retries_after_midnight_in_vietnam(self):
        self.server.expect(ZNS_PATH, json={"error": -144, "message": "OA has exceeded the daily quota"})
        message = self.send_order()
        self.assertEqual(message.state, "queued", message.reason)
        # The next 00:00 in Vietnam (UTC+7, no daylight saving) is 17:00 UTC.
        midnight = self.dispatched_at.replace(hour=17, minute=0, second=0)
        if midnight <= self.dispatched_at:
            midnight += datetime.timedelta(days=1)
        self.assertGreaterEqual(message.next_attempt_at, midnight)

    def test_token_refused_again_after_its_refresh_retries_later(self):
        self.server.expect(ZNS_PATH, json={"error": -124, "message": "Access token is invalid"})
        self.server.expect(
            TOKEN_PATH, json={"access_token": "new-at", "refresh_token": "new-rt", "expires_in": "90000"}
        )
        self.server.expect(ZNS_PATH, json={"error": -124, "message": "Access token is invalid"})
        self.assertRetriedLater(self.send_order())
        self.assertEqual(len(self.server.requests_to(TOKEN_PATH)), 1)

    def test_tokens_are_not_copied_with_the_channel(self):
        copy = self.channel.copy()
        self.assertFalse(copy.zalo_access_token or copy.zalo_refresh_token)
        self.assertEqual(copy.zalo_template_id, "231234")

    def test_managers_can_refresh_the_token_from_the_form(self):
        self.server.expect(
            TOKEN_PATH, json={"access_token": "manual-at", "refresh_token": "manual-rt", "expires_in": "90000"}
        )
        with self.assertRaises(AccessError):
            self.channel.with_user(self.user_a).action_zalo_refresh_token()
        self.assertFalse(self.server.requests)
        result = self.channel.with_user(self.manager_a).action_zalo_refresh_token()
        self.assertEqual(result["params"]["type"], "success")
        self.assertEqual((self.channel.zalo_access_token, self.channel.zalo_refresh_token), ("manual-at", "manual-rt"))
