import datetime

from freezegun import freeze_time

from odoo import fields
from odoo.exceptions import ValidationError
from odoo.tests import Form, tagged

from ..models.gobysend_message_inapp import MAX_INAPP_MESSAGES
from .common import GobysendCase, GobysendHttpCase

# 23:00 on a Monday in Ho Chi Minh City (UTC+7): inside the workspace's quiet hours.
MONDAY_NIGHT_UTC = datetime.datetime(2026, 11, 23, 16, 0)


class InappMixin:
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workspace_a.write(
            {"token_balance": 10, "tz": "Asia/Ho_Chi_Minh", "quiet_hours_start": 21, "quiet_hours_end": 8}
        )
        cls.contact = cls.env["res.partner"].create(
            {"name": "Nguyễn Thị Lan", "email": "lan@example.com", "phone": "+84912345678", "tz": "Asia/Ho_Chi_Minh"}
        )
        cls.subscription = cls.env["gobysend.subscription"].create(
            {"workspace_id": cls.workspace_a.id, "partner_id": cls.contact.id, "external_id": "C-1"}
        )
        cls.inapp = cls.env["gobysend.channel"].create(
            {"name": "App banners", "workspace_id": cls.workspace_a.id, "channel_type": "inapp", "state": "enabled"}
        )

    def enqueue(self, body="Chào {{ contact.first_name }}", subject="Ưu đãi", channel=None, partner=None, **inapp):
        return self.env["gobysend.message"]._enqueue(
            partner or self.contact, channel or self.inapp, body, subject=subject, context={"inapp": inapp}
        )

    def ledger(self, workspace):
        """The workspace's ledger entries for messages (its top-ups aside)."""
        return self.env["gobysend.token.transaction"].search(
            [("workspace_id", "=", workspace.id), ("message_id", "!=", False)]
        )


@tagged("time_sensitive")
@freeze_time(MONDAY_NIGHT_UTC)
class TestInappChannel(InappMixin, GobysendCase):
    def test_an_inapp_channel_uses_the_inapp_provider_free_and_unlimited(self):
        self.assertEqual(
            (self.inapp.provider, self.inapp.token_cost, self.inapp.rate_limit, self.inapp.inapp_display_kind),
            ("inapp", 0, 0, "banner"),
        )
        with self.assertRaisesRegex(ValidationError, "cost no tokens"):
            self.inapp.token_cost = 2
        with self.assertRaisesRegex(ValidationError, "In-app provider"):
            self.inapp.provider = "outbox"
        with self.assertRaisesRegex(ValidationError, "In-app provider"):
            self.env["gobysend.channel"].create(
                {"name": "SMS", "workspace_id": self.workspace_a.id, "channel_type": "sms", "provider": "inapp"}
            )

    def test_an_sms_channel_turned_inapp_becomes_free(self):
        sms = self.env["gobysend.channel"].create(
            {"name": "SMS", "workspace_id": self.workspace_a.id, "channel_type": "sms", "token_cost": 2}
        )
        sms.channel_type = "inapp"
        self.assertEqual((sms.provider, sms.token_cost, sms.rate_limit), ("inapp", 0, 0))

    def test_the_form_of_an_inapp_channel_shows_no_credentials_nor_cost(self):
        form = Form(self.env["gobysend.channel"].with_user(self.manager_a))
        form.name = "App pop-ups"
        form.workspace_id = self.workspace_a
        form.token_cost = 2
        form.channel_type = "inapp"
        self.assertEqual((form.provider, form.token_cost), ("inapp", 0))
        arch = form._view["tree"]
        hidden = {"sender", "token_cost", "rate_limit"}
        hidden.update(arch.xpath("//page[@name='credentials']//field/@name"))
        for name in hidden:
            with self.subTest(field=name):
                self.assertTrue(form._get_modifier(name, "invisible"), f"{name} is shown")
        for name in ("inapp_display_kind", "inapp_validity_days"):
            self.assertFalse(form._get_modifier(name, "invisible"), f"{name} is hidden")
        form.inapp_display_kind = "popup"
        channel = form.save()
        self.assertEqual((channel.provider, channel.token_cost, channel.inapp_display_kind), ("inapp", 0, "popup"))
        form = Form(channel)
        form.channel_type = "sms"
        self.assertEqual(form.provider, "outbox", "an SMS channel cannot keep the in-app provider")
        self.assertFalse(form._get_modifier("token_cost", "invisible"))
        self.assertTrue(form._get_modifier("inapp_validity_days", "invisible"))

    def test_sending_makes_the_message_available_without_tokens(self):
        message = self.enqueue(
            kind="popup", link="https://shop.example.com/sale", image_url="https://cdn.example.com/a.png"
        )
        message._dispatch()
        self.assertEqual(message.state, "delivered", message.reason)
        self.assertEqual(message.provider_message_id, f"inapp-{message.id}")
        self.assertEqual((message.subject, message.body), ("Ưu đãi", "Chào Lan"))
        self.assertEqual(
            (message.inapp_kind, message.inapp_link, message.inapp_image_url),
            ("popup", "https://shop.example.com/sale", "https://cdn.example.com/a.png"),
        )
        self.assertEqual(message.token_cost, 0)
        self.assertEqual(self.workspace_a.token_balance, 10)
        self.assertFalse(self.ledger(self.workspace_a), "the ledger records nothing for a free message")

    def test_a_token_cost_left_on_an_inapp_channel_is_not_charged(self):
        # A channel saved before in-app messages were free: its cost is ignored, never debited.
        self.env.cr.execute("UPDATE gobysend_channel SET token_cost = 3 WHERE id = %s", [self.inapp.id])
        self.inapp.invalidate_recordset(["token_cost"])
        message = self.enqueue()
        self.assertEqual(message.token_cost, 0)
        message._dispatch()
        self.assertEqual(message.state, "delivered", message.reason)
        self.assertEqual(self.workspace_a.token_balance, 10)
        self.assertFalse(self.ledger(self.workspace_a))

    def test_quiet_hours_do_not_hold_an_inapp_message(self):
        sms = self.env["gobysend.channel"].create(
            {"name": "SMS", "workspace_id": self.workspace_a.id, "channel_type": "sms", "state": "enabled"}
        )
        self.assertEqual(self.enqueue(channel=sms)._dispatch().state, "queued", "an SMS waits for the morning")
        self.assertEqual(self.enqueue()._dispatch().state, "delivered")

    def test_no_consent_is_needed_but_unsubscribing_from_everything_is_honoured(self):
        self.subscription._set_consent("email", "unsubscribed", "manual")
        self.subscription._set_consent("push", "bounced", "bounce")
        self.assertEqual(self.enqueue()._dispatch().state, "delivered")
        for channel in ("sms", "zalo", "push"):
            self.subscription._set_consent(channel, "unsubscribed", "manual")
        message = self.enqueue()._dispatch()
        self.assertEqual(message.state, "skipped")
        self.assertIn("unsubscribed from every channel", message.reason)

    def test_a_contact_outside_the_workspace_gets_nothing(self):
        stranger = self.env["res.partner"].create({"name": "Stranger"})
        message = self.enqueue(partner=stranger)._dispatch()
        self.assertEqual(message.state, "skipped")
        self.assertIn("not subscribed", message.reason)

    def test_expiry_from_the_channel_or_the_message(self):
        self.inapp.inapp_validity_days = 7
        by_channel = self.enqueue()._dispatch()
        self.assertEqual(by_channel.inapp_expires_at, MONDAY_NIGHT_UTC + datetime.timedelta(days=7))
        kept = self.enqueue(validity_days=0)._dispatch()
        self.assertFalse(kept.inapp_expires_at)
        exact = self.enqueue(expires_at="2026-11-30T08:00:00+07:00")._dispatch()
        self.assertEqual(exact.inapp_expires_at, datetime.datetime(2026, 11, 30, 1, 0))
        late = self.enqueue(expires_at="2026-11-23T15:00:00Z")._dispatch()
        self.assertEqual(late.state, "skipped")
        self.assertIn("expired", late.reason)

    def test_bad_inapp_settings_are_refused_before_anything_is_queued(self):
        for field, settings in (
            ("inapp.kind", {"kind": "toast"}),
            ("inapp.link", {"link": "javascript:alert(1)"}),
            ("inapp.image_url", {"image_url": "data:image/png;base64,AAAA"}),
            ("inapp.expires_at", {"expires_at": "next week"}),
            ("inapp.validity_days", {"validity_days": -1}),
            ("inapp.colour", {"colour": "red"}),
        ):
            with self.subTest(field=field), self.assertInvalidInput(field):
                self.enqueue(**settings)
        self.assertFalse(self.env["gobysend.message"].search([("channel_id", "=", self.inapp.id)]))

    def test_a_channel_in_test_mode_shows_only_test_messages(self):
        self.inapp.state = "test"
        message = self.enqueue()._dispatch()
        self.assertEqual(message.state, "sent", "recorded by the embedded outbox, not made available")
        Message = self.env["gobysend.message"]
        self.assertFalse(Message._inapp_active_messages(self.workspace_a, self.contact))
        self.inapp.test_partner_id = self.contact
        self.inapp.action_send_test()
        self.commit_request()
        test_message = Message._inapp_active_messages(self.workspace_a, self.contact)
        self.assertEqual(test_message.mapped("is_test"), [True])
        self.assertEqual(test_message.state, "delivered", test_message.reason)

    def test_the_claimed_dispatch_makes_messages_available_too(self):
        messages = self.enqueue(kind="popup") | self.enqueue()
        self.env.flush_all()
        # The dispatcher's own cursors become savepoints of the test's transaction.
        self.registry.enter_test_mode(self.env.cr)
        try:
            self.inapp._job_dispatch()
        finally:
            self.registry.leave_test_mode()
        self.env.invalidate_all()
        self.assertEqual(messages.mapped("state"), ["delivered", "delivered"])
        self.assertEqual(messages.mapped("inapp_kind"), ["popup", "banner"])
        self.assertFalse(self.ledger(self.workspace_a))


@tagged("post_install", "-at_install")
class TestInappApi(InappMixin, GobysendHttpCase):
    def test_the_app_lists_engages_and_dismisses(self):
        first = self.enqueue(subject="Old", link="https://shop.example.com/old")._dispatch()
        second = self.enqueue(subject="New {{ contact.first_name }}", kind="popup")._dispatch()
        queued = self.enqueue(subject="Not sent yet")
        response = self.api("GET", "/inapp?id=C-1")
        self.assertEqual(response.status_code, 200, response.text)
        payload = response.json()
        self.assertEqual(payload["contact_id"], self.contact.id)
        self.assertEqual([item["id"] for item in payload["messages"]], [second.id, first.id], "newest first")
        self.assertNotIn(queued.id, [item["id"] for item in payload["messages"]])
        newest = payload["messages"][0]
        self.assertEqual(
            (newest["kind"], newest["subject"], newest["body"], newest["link"], newest["state"]),
            ("popup", "New Lan", "Chào Lan", None, "delivered"),
        )
        self.assertEqual(payload["messages"][1]["link"], "https://shop.example.com/old")
        self.assertTrue(newest["created_at"])
        # The same contact by email or by phone in any format.
        for query in ("email=lan@example.com", "phone=0912%20345%20678"):
            response = self.api("GET", f"/inapp?{query}")
            self.assertEqual([item["id"] for item in response.json()["messages"]], [second.id, first.id], query)

        for _attempt in range(2):
            response = self.api("POST", f"/inapp/{first.id}/seen")
            self.assertEqual(response.status_code, 200, response.text)
            self.assertEqual(response.json(), {"id": first.id, "state": "opened", "dismissed": False})
        self.assertEqual(self.api("POST", f"/inapp/{first.id}/clicked").json()["state"], "clicked")
        self.assertEqual(self.api("POST", f"/inapp/{first.id}/seen").json()["state"], "clicked", "never goes back")
        for _attempt in range(2):
            response = self.api("POST", f"/inapp/{second.id}/dismissed")
            self.assertEqual(response.json(), {"id": second.id, "state": "delivered", "dismissed": True})
        self.assertEqual(
            [item["id"] for item in self.api("GET", "/inapp?id=C-1").json()["messages"]], [first.id], "dismissed"
        )
        events = self.events_of(self.workspace_a)
        self.assertEqual(
            sorted(events.mapped("name")), ["message_clicked", "message_dismissed", "message_opened"], "each once"
        )
        self.assertEqual(self.workspace_a.token_balance, 10)
        self.assertFalse(self.ledger(self.workspace_a))

    def test_expired_messages_are_not_listed(self):
        current = self.enqueue()._dispatch()
        expired = self.enqueue()._dispatch()
        expired.inapp_expires_at = fields.Datetime.now() - datetime.timedelta(minutes=1)
        response = self.api("GET", "/inapp?id=C-1")
        self.assertEqual([item["id"] for item in response.json()["messages"]], [current.id])

    def test_at_most_a_page_of_messages_is_listed(self):
        self.env["gobysend.message"].concat(*(self.enqueue() for _index in range(MAX_INAPP_MESSAGES + 1)))._dispatch()
        self.assertEqual(len(self.api("GET", "/inapp?id=C-1").json()["messages"]), MAX_INAPP_MESSAGES)

    def test_bad_requests_name_the_field(self):
        self.assertApiError(self.api("GET", "/inapp"), 422, "id")
        self.assertApiError(self.api("GET", "/inapp?id=C-404"), 404, "id")
        self.assertApiError(self.api("GET", "/inapp?email=nobody@example.com"), 404, "email")
        self.assertApiError(self.api("GET", "/inapp?email=not-an-email"), 422, "email")
        self.assertApiError(self.api("GET", "/inapp?id=C-1", key=""), 401)
        message = self.enqueue()._dispatch()
        self.assertApiError(self.api("POST", f"/inapp/{message.id}/liked"), 422, "action")
        self.assertApiError(self.api("POST", "/inapp/not-a-number/seen"), 422, "message_id")
        self.assertApiError(self.api("POST", f"/inapp/{2**31}/seen"), 422, "message_id")
        self.assertApiError(self.api("POST", f"/inapp/{message.id + 1000}/seen"), 404, "message_id")
        queued = self.enqueue()
        self.assertApiError(self.api("POST", f"/inapp/{queued.id}/seen"), 404, "message_id")
        self.assertEqual(message.state, "delivered")

    def test_workspaces_never_see_each_others_messages(self):
        self.workspace_b.tz = "Asia/Ho_Chi_Minh"
        key_b = self.workspace_b.api_key_create("Shop B")
        self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_b.id, "partner_id": self.contact.id, "external_id": "B-1"}
        )
        inapp_b = self.env["gobysend.channel"].create(
            {"name": "B banners", "workspace_id": self.workspace_b.id, "channel_type": "inapp", "state": "enabled"}
        )
        message_a = self.enqueue(subject="A")._dispatch()
        message_b = self.enqueue(subject="B", channel=inapp_b)._dispatch()
        listed_a = self.api("GET", "/inapp?email=lan@example.com").json()["messages"]
        listed_b = self.api("GET", "/inapp?email=lan@example.com", key=key_b).json()["messages"]
        self.assertEqual([item["id"] for item in listed_a], [message_a.id])
        self.assertEqual([item["id"] for item in listed_b], [message_b.id])
        # B's key knows no contact C-1 and cannot touch A's message.
        self.assertApiError(self.api("GET", "/inapp?id=C-1", key=key_b), 404, "id")
        for action in ("seen", "clicked", "dismissed"):
            self.assertApiError(self.api("POST", f"/inapp/{message_a.id}/{action}", key=key_b), 404, "message_id")
        self.assertEqual((message_a.state, message_a.inapp_dismissed_at), ("delivered", False))
        self.assertFalse(self.events_of(self.workspace_a) | self.events_of(self.workspace_b))

    def test_the_openapi_document_describes_the_inapp_endpoints(self):
        response = self.opener.get(self.base_url() + self.api_root + "/openapi.json", timeout=30)
        document = response.json()
        listing = document["paths"]["/inapp"]["get"]
        query = {parameter["name"] for parameter in listing["parameters"] if parameter["in"] == "query"}
        self.assertEqual(query, {"id", "email", "phone"})
        self.assertLessEqual({"200", "401", "404", "422"}, set(listing["responses"]))
        self.assertTrue(listing.get("security"))
        engagement = document["paths"]["/inapp/{message_id}/{action}"]["post"]
        self.assertLessEqual({"200", "401", "404", "422"}, set(engagement["responses"]))
        action = next(parameter for parameter in engagement["parameters"] if parameter["name"] == "action")
        self.assertEqual(set(action["schema"]["enum"]), {"seen", "clicked", "dismissed"})
        for schema in ("InappMessagesResponse", "InappMessage", "InappEngagementResponse"):
            self.assertIn(schema, document["components"]["schemas"])
