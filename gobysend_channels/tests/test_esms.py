import datetime

from odoo import fields

from .common import ChannelCase

SEND_PATH = "/MainService.svc/json/SendMultipleMessage_V4_post_json/"


class TestEsms(ChannelCase):
    def setUp(self):
        super().setUp()
        self.channel = self.create_channel(
            "esms",
            "sms",
            sender="GOBYSEND",
            esms_api_key="esms-api-key",
            esms_secret_key="esms-secret-key",
            esms_base_url=self.server.url,
        )

    def request_id(self, message):
        database_uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid")
        return f"gbs-{database_uuid[:8]}-{message.id}"

    def test_brand_name_sms_is_posted_as_json(self):
        self.server.expect(
            SEND_PATH, json={"CodeResult": "100", "CountRegenerate": 0, "SMSID": "d533459ee42b2b9525ba9eabf6a8156"}
        )
        message = self.send(self.channel)
        self.assertSent(message, "d533459ee42b2b9525ba9eabf6a8156")
        (request,) = self.server.requests
        self.assertEqual((request.method, request.target), ("POST", SEND_PATH))
        self.assertEqual(request.headers["Content-Type"], "application/json")
        self.assertEqual(
            request.json(),
            {
                "ApiKey": "esms-api-key",
                "SecretKey": "esms-secret-key",
                "Phone": "0912345678",
                "Content": "Xin chào Lan",
                "Brandname": "GOBYSEND",
                "SmsType": "2",
                "IsUnicode": "1",
                "Sandbox": "0",
                "RequestId": self.request_id(message),
            },
        )

    def test_plain_text_and_sandbox(self):
        self.channel.esms_sandbox = True
        self.server.expect(SEND_PATH, json={"CodeResult": "100", "CountRegenerate": 0, "SMSID": "s-2"})
        self.send(self.channel, body="Hello {{ contact.first_name }}")
        sent = self.server.requests[0].json()
        self.assertEqual((sent["IsUnicode"], sent["Sandbox"], sent["Content"]), ("0", "1", "Hello Lan"))

    def test_invalid_number_fails_for_good(self):
        self.server.expect(
            SEND_PATH, json={"CodeResult": "108", "CountRegenerate": 0, "ErrorMessage": "Phone not valid"}
        )
        self.assertFailed(self.send(self.channel), "108", "Phone not valid")

    def test_unknown_brand_name_fails_for_good(self):
        self.server.expect(
            SEND_PATH, json={"CodeResult": "104", "CountRegenerate": 0, "ErrorMessage": "Brand name code is not exist"}
        )
        self.assertFailed(self.send(self.channel), "104")

    def test_empty_balance_retries_in_an_hour(self):
        self.server.expect(
            SEND_PATH, json={"CodeResult": "103", "CountRegenerate": 0, "ErrorMessage": "Balance not enough"}
        )
        self.assertRetriedLater(self.send(self.channel), at_least_seconds=3600)

    def test_duplicate_request_id_means_an_earlier_attempt_got_through(self):
        self.server.expect(
            SEND_PATH,
            json={"CodeResult": "124", "CountRegenerate": 0, "ErrorMessage": "Request exist 1", "SendStatus": "5"},
        )
        message = self.send(self.channel)
        self.assertSent(message, self.request_id(message))

    def test_answer_too_late_is_retried_with_the_same_request_id(self):
        # Odoo's test harness raises every timeout below 10 seconds to 10 seconds.
        self.channel.request_timeout = 1
        self.server.expect(SEND_PATH, json={"CodeResult": "100", "SMSID": "late"}, delay=11)
        message = self.send(self.channel)
        # eSMS may have the SMS, but refuses its request id a second time: retrying is safe.
        self.assertRetriedLater(message)
        self.server.expect(SEND_PATH, json={"CodeResult": "124", "CountRegenerate": 0, "ErrorMessage": "Request exist"})
        message._dispatch()
        self.assertSent(message, self.request_id(message))
        request_ids = [request.json()["RequestId"] for request in self.server.requests]
        self.assertEqual(request_ids, [self.request_id(message)] * 2)

    def test_interrupted_hand_over_is_queued_again(self):
        self.registry.enter_test_mode(self.env.cr)
        self.addCleanup(self.registry.leave_test_mode)
        Message = self.env["gobysend.message"]
        message = Message._enqueue(self.contact, self.channel, "Xin chào")
        Message._claim_due(self.channel, 10)
        message.handed_over_at = fields.Datetime.now()
        # Its dispatcher stopped beating while eSMS might have had it.
        later = fields.Datetime.now() + datetime.timedelta(minutes=11)
        self.assertEqual(Message._recover_interrupted(later), (1, 0))
        self.assertEqual(message.state, "queued", "its request id makes another attempt safe")

    def test_gateway_error_retries_with_backoff(self):
        self.server.expect(SEND_PATH, 502, text="Bad Gateway")
        self.assertRetriedLater(self.send(self.channel))

    def test_number_outside_vietnam_is_refused_before_calling(self):
        self.contact.phone = "+33 6 12 34 56 78"
        message = self.send(self.channel)
        self.assertFailed(message, "+33612345678")
        self.assertFalse(self.server.requests)
