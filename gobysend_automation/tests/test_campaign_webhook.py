import datetime
import json

from odoo.tests import tagged

from odoo.addons.queue_job.job import Job

from ..kinds import TRIGGERS
from ..kinds.triggers.webhook import MAX_BODY_BYTES, SECRET_HEADER
from .common import GobysendHttpCase
from .test_campaign import CampaignCase

# A Monday, 10:00 in Ho Chi Minh City (UTC+7): the moment the tests dispatch at.
MONDAY_MORNING_UTC = datetime.datetime(2026, 11, 23, 3, 0)


@tagged("post_install", "-at_install")
class TestCampaignWebhook(GobysendHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workspace_a.write({"token_balance": 1000, "tz": "Asia/Ho_Chi_Minh"})
        cls.contact = cls.env["res.partner"].create(
            {"name": "Lan", "email": "lan@example.com", "phone": "+84912345678", "tz": "Asia/Ho_Chi_Minh"}
        )
        cls.env["gobysend.subscription"].create(
            {"workspace_id": cls.workspace_a.id, "partner_id": cls.contact.id, "external_id": "C-1"}
        )
        cls.sms = cls.env["gobysend.channel"].create(
            {"name": "SMS", "workspace_id": cls.workspace_a.id, "channel_type": "sms", "state": "enabled"}
        )

    def setUp(self):
        super().setUp()
        self.campaign = self.env["gobysend.campaign"].create(
            {"name": "Order shipped", "workspace_id": self.workspace_a.id, "trigger_kind": "webhook"}
        )
        self.env["gobysend.campaign.step"].create(
            {
                "campaign_id": self.campaign.id,
                "kind": "send",
                "channel_id": self.sms.id,
                "body": "Hi {{ contact.name }}, order {{ data.order_id }} ships by {{ data.carrier.name }}",
            }
        )
        self.campaign.action_launch()
        self.assertEqual(self.campaign.state, "running")

    def call(self, payload=None, secret=None, raw=None, campaign=None, headers=None):
        campaign = campaign or self.campaign
        all_headers = {"Content-Type": "application/json"}
        secret = campaign.webhook_secret if secret is None else secret
        if secret:
            all_headers[SECRET_HEADER] = secret
        all_headers.update(headers or {})
        data = raw if raw is not None else json.dumps(payload)
        response = self.opener.post(
            f"{self.base_url()}/gobysend/campaign/{campaign.webhook_uuid}", data=data, headers=all_headers, timeout=60
        )
        self.env.invalidate_all()
        return response

    def assertFieldError(self, response, status, field):
        self.assertEqual(response.status_code, status, response.text)
        detail = response.json()["detail"]
        self.assertEqual([error["loc"] for error in detail], [["body", field]], detail)
        return detail[0]["msg"]

    def journeys(self):
        return self.env["gobysend.journey"].search([("campaign_id", "=", self.campaign.id)])

    def test_call_starts_a_journey_and_its_data_reaches_the_template(self):
        response = self.call({"id": "C-1", "data": {"order_id": "SO-42", "carrier": {"name": "GHN"}}})
        self.assertEqual(response.status_code, 202, response.text)
        answer = response.json()
        journey = self.journeys()
        self.assertEqual(answer["journey_id"], journey.id)
        self.assertEqual(answer["contact_id"], self.contact.id)
        self.assertFalse(answer["created_contact"])
        self.assertEqual(journey.partner_id, self.contact)
        self.assertEqual(journey.trigger_context["data"], {"order_id": "SO-42", "carrier": {"name": "GHN"}})
        # Nothing was sent, nor even queued, inside the request: the journey waits for the engine.
        self.assertEqual(journey.state, "active")
        self.assertFalse(self.env["gobysend.message"].search([("campaign_id", "=", self.campaign.id)]))
        Journey = self.env["gobysend.journey"]
        claim = Journey._claim_due(100, journey.wake_at)
        self.assertEqual(Journey._advance_claimed(claim, journey.wake_at), 1)
        self.env.invalidate_all()
        self.assertEqual(journey.state, "completed")
        message = journey.message_ids
        message._dispatch(MONDAY_MORNING_UTC)
        self.assertEqual(message.state, "sent", message.reason)
        self.assertEqual(message.body, "Hi Lan, order SO-42 ships by GHN")

    def test_contact_by_email_or_phone_and_unknown_contacts_are_created(self):
        for key, value in (("email", "LAN@example.com"), ("phone", "0912 345 678")):
            with self.subTest(key=key):
                self.campaign.reentry = "every_time"
                response = self.call({key: value})
                self.assertEqual(response.status_code, 202, response.text)
                self.assertEqual(response.json()["contact_id"], self.contact.id)
        response = self.call({"email": "new@example.com", "data": {"source": "signup form"}})
        self.assertEqual(response.status_code, 202, response.text)
        answer = response.json()
        self.assertTrue(answer["created_contact"])
        subscription = self.subscription_of(self.workspace_a, answer["contact_id"])
        self.assertEqual(subscription.partner_id.email, "new@example.com")
        self.assertEqual(subscription.partner_id.gobysend_origin_workspace_id, self.workspace_a)
        # Created for this workspace only.
        self.assertFalse(self.subscription_of(self.workspace_b, answer["contact_id"]))

    def test_another_workspaces_contact_is_never_reached(self):
        theirs = self.env["res.partner"].create({"name": "B's customer", "email": "b@example.com"})
        self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_b.id, "partner_id": theirs.id, "external_id": "B-1"}
        )
        for payload in ({"email": "b@example.com"}, {"id": "B-1"}):
            with self.subTest(payload=payload):
                self.campaign.reentry = "every_time"
                response = self.call(payload)
                self.assertEqual(response.status_code, 202, response.text)
                self.assertNotEqual(response.json()["contact_id"], theirs.id)
                self.assertTrue(response.json()["created_contact"])
        self.assertNotIn(theirs, self.journeys().partner_id)
        self.assertFalse(self.subscription_of(self.workspace_a, theirs))

    def test_wrong_or_missing_secret_is_refused_and_stores_nothing(self):
        contacts = self.env["res.partner"].search_count([])
        for secret in ("", "wrong", self.campaign.webhook_secret[:-1], "é" * 10):
            with self.subTest(secret=secret):
                response = self.call({"email": "intruder@example.com", "data": {}}, secret=secret)
                self.assertEqual(response.status_code, 401, response.text)
                self.assertIn(SECRET_HEADER, response.json()["detail"])
        self.assertFalse(self.journeys())
        self.assertEqual(self.env["res.partner"].search_count([]), contacts)

    def test_rotating_the_secret_refuses_the_old_one(self):
        old = self.campaign.webhook_secret
        self.campaign.action_rotate_webhook_secret()
        self.assertNotEqual(self.campaign.webhook_secret, old)
        self.assertEqual(self.call({"id": "C-1"}, secret=old).status_code, 401)
        self.assertEqual(self.call({"id": "C-1"}).status_code, 202)

    def test_another_campaigns_secret_is_refused(self):
        other = self.env["gobysend.campaign"].create(
            {"name": "Other", "workspace_id": self.workspace_a.id, "trigger_kind": "webhook"}
        )
        self.assertEqual(self.call({"id": "C-1"}, secret=other.webhook_secret).status_code, 401)
        self.assertFalse(self.journeys())

    def test_unknown_address_and_campaigns_not_running(self):
        response = self.opener.post(
            f"{self.base_url()}/gobysend/campaign/00000000-0000-0000-0000-000000000000",
            data="{}",
            headers={SECRET_HEADER: self.campaign.webhook_secret},
            timeout=60,
        )
        self.assertEqual(response.status_code, 404, response.text)
        # A campaign of another trigger has an address too, which starts nothing.
        manual = self.env["gobysend.campaign"].create({"name": "Manual", "workspace_id": self.workspace_a.id})
        self.assertEqual(self.call({"id": "C-1"}, campaign=manual).status_code, 404)
        self.campaign.action_pause()
        response = self.call({"id": "C-1"})
        self.assertEqual(response.status_code, 409, response.text)
        self.assertIn("is not running", response.json()["detail"])
        self.assertFalse(self.journeys())
        self.campaign.action_resume()
        self.assertEqual(self.call({"id": "C-1"}).status_code, 202)

    def test_bad_bodies_are_refused_naming_the_field(self):
        self.assertFieldError(self.call(raw="not json"), 400, "body")
        self.assertFieldError(self.call(raw=b"\xff\xfe{}"), 400, "body")
        self.assertFieldError(
            self.call(raw='{"id": "C-1", "data": {"a": ' + "[" * 30000 + "]" * 30000 + "}}"), 400, "body"
        )
        self.assertFieldError(self.call([{"id": "C-1"}]), 400, "body")
        self.assertFieldError(self.call({"data": {"a": 1}}), 422, "id")
        self.assertFieldError(self.call({"email": "not an email"}), 422, "email")
        self.assertFieldError(self.call({"id": "C-1", "data": ["a"]}), 422, "data")
        self.assertFieldError(self.call({"id": "C-1", "data": "x"}), 422, "data")
        self.assertFieldError(self.call({"id": "C-1", "date": {}}), 422, "date")
        self.assertFieldError(self.call({"id": "C-1", "idempotency_key": 7}), 422, "idempotency_key")
        self.assertFieldError(self.call({"id": "C-1", "data": {"note": "a\u0000b"}}), 422, "data.note")
        response = self.call({"id": "C-1", "data": {"blob": "x" * MAX_BODY_BYTES}})
        self.assertEqual(response.status_code, 413, response.text)
        self.assertFalse(self.journeys())
        # An unknown email in a refused body created no contact.
        self.call({"email": "someone@example.com", "data": 3})
        self.assertFalse(self.env["res.partner"].search([("email", "=", "someone@example.com")]))

    def test_idempotency_key_returns_the_same_journey(self):
        self.campaign.reentry = "every_time"
        payload = {"id": "C-1", "idempotency_key": "shipment-7", "data": {"order_id": "SO-7"}}
        first = self.call(payload)
        self.assertEqual(first.status_code, 202, first.text)
        again = self.call(payload)
        self.assertEqual(again.status_code, 202, again.text)
        self.assertEqual(again.json()["journey_id"], first.json()["journey_id"])
        self.assertTrue(again.json()["duplicate"])
        self.assertEqual(len(self.journeys()), 1)
        # Another key, or none, is another journey under "every time".
        self.assertNotEqual(
            self.call(dict(payload, idempotency_key="shipment-8")).json()["journey_id"], first.json()["journey_id"]
        )
        self.call({"id": "C-1"})
        self.call({"id": "C-1"})
        self.assertEqual(len(self.journeys()), 4)

    def test_idempotency_key_holds_after_a_journey_ended_once_at_a_time(self):
        self.campaign.reentry = "once_at_a_time"
        payload = {"id": "C-1", "idempotency_key": "k-1"}
        first = self.call(payload).json()["journey_id"]
        journey = self.env["gobysend.journey"].browse(first)
        Journey = self.env["gobysend.journey"]
        Journey._advance_claimed(Journey._claim_due(100, journey.wake_at), journey.wake_at)
        self.env.invalidate_all()
        self.assertEqual(journey.state, "completed")
        self.assertFalse(journey.entry_key, "once at a time: the contact may enter again")
        again = self.call(payload)
        self.assertEqual((again.status_code, again.json()["journey_id"]), (202, first))
        self.assertEqual(len(self.journeys()), 1)
        self.assertEqual(self.call({"id": "C-1", "idempotency_key": "k-2"}).status_code, 202)
        self.assertEqual(len(self.journeys()), 2)

    def test_reentry_refusal_is_answered_without_a_new_journey(self):
        first = self.call({"id": "C-1"})
        self.assertEqual(first.status_code, 202, first.text)
        again = self.call({"id": "C-1"})
        self.assertEqual(again.status_code, 200, again.text)
        self.assertEqual(again.json()["journey_id"], first.json()["journey_id"])
        self.assertFalse(again.json()["duplicate"])
        self.assertIn("re-entry", again.json()["detail"])
        self.assertEqual(len(self.journeys()), 1)

    def test_archived_or_removed_contacts_are_refused(self):
        self.subscription_of(self.workspace_a, self.contact).active = False
        self.assertFieldError(self.call({"id": "C-1"}), 409, "id")
        self.assertFalse(self.journeys())


class TestCampaignWebhookInTheBackground(CampaignCase):
    def test_the_journey_is_run_by_a_job_of_the_engine(self):
        campaign = self.campaign(trigger_kind="webhook", reentry="every_time")
        campaign.action_launch()
        # As the controller calls it: in a request of the public user, the campaign in sudo.
        public_campaign = campaign.with_user(self.env.ref("base.public_user")).sudo()
        status, answer = TRIGGERS["webhook"].receive(
            public_campaign, {"email": self.contacts[0].email, "data": {"order_id": "SO-1"}}
        )
        self.assertEqual(status, 202)
        journey = self.env["gobysend.journey"].browse(answer["journey_id"])
        self.assertEqual(journey.state, "active")
        self.commit_request()
        jobs = self.env["queue.job"].search([("method_name", "=", "_job_advance")])
        self.assertTrue(jobs, "the request's commit wakes the engine")
        # Owned by the engine's own user, as its scheduled actions are, not by the anonymous caller.
        self.assertEqual(jobs.user_id, self.env.ref("base.user_root"))
        for job in jobs:
            Job.load(self.env, job.uuid).perform()
        self.env.invalidate_all()
        self.assertEqual(journey.state, "completed")
        self.assertEqual(len(journey.message_ids), 1)
