from .common import ChannelCase
from .provider_server import ProviderServer

SLACK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
TELEGRAM_PATH = f"/bot{BOT_TOKEN}/sendMessage"


class TestSlack(ChannelCase):
    def setUp(self):
        super().setUp()
        self.channel = self.create_channel("slack", "slack", slack_webhook_url=self.server.url + SLACK_PATH)

    def test_message_about_the_contact_is_posted_to_the_webhook(self):
        self.server.expect(SLACK_PATH, text="ok", headers={"Content-Type": "text/html"})
        message = self.send(self.channel, body="{{ contact.name }} vừa đặt hàng", subject="Đơn mới")
        self.assertSent(message, f"slack-{message.id}")
        (request,) = self.server.requests
        self.assertEqual((request.method, request.target), ("POST", SLACK_PATH))
        self.assertEqual(request.headers["Content-Type"], "application/json")
        self.assertEqual(request.json(), {"text": "*Đơn mới*\nNguyễn Thị Lan vừa đặt hàng"})

    def test_contact_data_cannot_ping_or_forge_links(self):
        self.contact.name = "<!channel> Lan & <https://evil.example|click here>"
        self.server.expect(SLACK_PATH, text="ok")
        message = self.send(
            self.channel,
            body="<https://shop.example/orders|Order> from {{ contact.name }}",
            subject="New order: {{ contact.name }}",
        )
        self.assertSent(message, f"slack-{message.id}")
        contact = "&lt;!channel&gt; Lan &amp; &lt;https://evil.example|click here&gt;"
        # The template's own markup stays a link; what the contact wrote is text.
        self.assertEqual(
            self.server.requests[0].json(),
            {"text": f"*New order: {contact}*\n<https://shop.example/orders|Order> from {contact}"},
        )

    def test_team_channels_need_no_consent_of_the_contact(self):
        self.subscription._set_consent("sms", "unsubscribed", "manual")
        self.subscription.unlink()
        self.server.expect(SLACK_PATH, text="ok")
        self.assertEqual(self.send(self.channel).state, "sent")

    def test_removed_webhook_fails(self):
        self.server.expect(SLACK_PATH, 404, text="no_service")
        message = self.send(self.channel)
        self.assertFailed(message, "no_service")
        self.assertNotIn(SLACK_PATH, message.reason + message.provider_answer)

    def test_rate_limit_retries_after_the_delay(self):
        self.server.expect(SLACK_PATH, 429, text="rate_limited", headers={"Retry-After": "30"})
        self.assertRetriedLater(self.send(self.channel), at_least_seconds=30)


class TestTelegram(ChannelCase):
    def setUp(self):
        super().setUp()
        self.channel = self.create_channel(
            "telegram",
            "chat",
            telegram_bot_token=BOT_TOKEN,
            telegram_chat_id="-1001234567890",
            telegram_base_url=self.server.url,
        )

    def test_message_is_sent_to_the_configured_chat(self):
        self.server.expect(
            TELEGRAM_PATH,
            json={
                "ok": True,
                "result": {
                    "message_id": 4242,
                    "sender_chat": {"id": -1001234567890, "title": "Sales", "type": "channel"},
                    "chat": {"id": -1001234567890, "title": "Sales", "type": "channel"},
                    "date": 1795402800,
                    "text": "Đơn mới\n\nNguyễn Thị Lan",
                },
            },
        )
        message = self.send(self.channel, body="{{ contact.name }}", subject="Đơn mới")
        self.assertSent(message, "4242")
        (request,) = self.server.requests
        self.assertEqual((request.method, request.target), ("POST", TELEGRAM_PATH))
        self.assertEqual(request.json(), {"chat_id": "-1001234567890", "text": "Đơn mới\n\nNguyễn Thị Lan"})

    def test_unknown_chat_fails_without_leaking_the_token(self):
        self.server.expect(
            TELEGRAM_PATH, 400, json={"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        )
        message = self.send(self.channel)
        self.assertFailed(message, "chat not found")
        self.assertNotIn(BOT_TOKEN, message.reason + message.provider_answer)

    def test_flood_control_retries_after_the_delay_telegram_gives(self):
        self.server.expect(
            TELEGRAM_PATH,
            429,
            json={
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 35",
                "parameters": {"retry_after": 35},
            },
        )
        self.assertRetriedLater(self.send(self.channel), at_least_seconds=35)

    def test_unreachable_api_does_not_leak_the_token(self):
        with ProviderServer() as gone:
            self.channel.telegram_base_url = gone.url  # nothing listens there afterwards
        message = self.send(self.channel)
        self.assertRetriedLater(message)
        self.assertNotIn(BOT_TOKEN, message.reason)
