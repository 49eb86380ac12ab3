import datetime
import hashlib
import hmac
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from freezegun import freeze_time

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged

from ..transport import ALLOWED_NETWORKS_PARAMETER, MAX_ANSWER_BYTES
from .test_campaign import MONDAY_MORNING_UTC, CampaignCase

MINUTE = datetime.timedelta(minutes=1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.path, dict(self.headers), body))
        status, payload = self.server.answers.popleft() if self.server.answers else (200, b'{"ok": true}')
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


class _Receiver(ThreadingHTTPServer):
    """The business's system on 127.0.0.1: records every request, answers what the test scripted."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = []
        self.answers = deque()

    def handle_error(self, request, client_address):
        pass  # a client that stops reading an answer too large leaves a broken pipe behind

    @property
    def url(self):
        return "http://127.0.0.1:%s/hooks/gobysend" % self.server_address[1]


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestWebhookStep(CampaignCase):
    def setUp(self):
        super().setUp()
        self.receiver = _Receiver()
        threading.Thread(target=self.receiver.serve_forever, daemon=True).start()
        self.addCleanup(self.receiver.server_close)
        self.addCleanup(self.receiver.shutdown)
        self.Call = self.env["gobysend.journey.call"]

    def hook_campaign(self, **step_values):
        step = {
            "kind": "webhook",
            "hook_url": self.receiver.url,
            "hook_payload": '{"greeting": "Hi {{ contact.name }}"}',
            "hook_retry_delays": "1,5",
        }
        step.update(step_values)
        campaign = self.campaign(
            [step, {"kind": "send", "channel_id": self.sms.id, "body": "After the call"}],
            partner_domain=f"[('id', '=', {self.contacts[0].id})]",
        )
        self.launch(campaign)
        return campaign

    def enter(self, campaign, partner, context):
        Journey = self.env["gobysend.journey"]
        (journey_id,) = Journey._enter(campaign, [{"partner_id": partner.id, "context": context}], run=True)
        return Journey.browse(journey_id)

    def perform(self, now=MONDAY_MORNING_UTC):
        self.env.flush_all()
        self.Call._job_perform(now=now)
        self.env.invalidate_all()

    def test_step_is_offered_and_summarised(self):
        offered = {kind["key"]: kind for kind in self.env["gobysend.campaign.step"].workflow_step_kinds()}
        self.assertEqual((offered["webhook"]["label"], offered["webhook"]["icon"]), ("Call a webhook", "fa-plug"))
        step = self.hook_campaign(hook_url="https://hooks.example.com/in").step_ids.filtered(
            lambda s: s.kind == "webhook"
        )
        self.assertEqual(step.summary, "POST hooks.example.com")
        self.assertIn("hook_url", step.kind_fields)

    def test_call_is_signed_json_made_outside_the_batch(self):
        campaign = self.hook_campaign(
            hook_payload='{"order": "{{ data.order if data else \'\' }}", "greeting": "Hi {{ contact.name }}"}'
        )
        journey = self.enter(campaign, self.contacts[1], {"data": {"order": "A-17"}, "record": {"name": "SO017"}})
        # The batch only queued the call: nothing left Odoo, the journey waits on the step.
        self.assertEqual(journey.state, "waiting")
        self.assertEqual(self.receiver.requests, [])
        call = journey.call_ids
        self.assertEqual((call.state, call.attempts), ("queued", 0))
        self.assertTrue(
            self.env["queue.job"].search_count([("method_name", "=", "_job_perform"), ("state", "=", "pending")])
        )

        self.perform()
        calls = [request for request in self.receiver.requests if json.loads(request[2])["journey"]["id"] == journey.id]
        self.assertEqual(len(calls), 1)
        path, headers, body = calls[0]
        self.assertEqual(path, "/hooks/gobysend")
        step = campaign.step_ids.filtered(lambda s: s.kind == "webhook")
        # The signature, recomputed here the way a receiver does.
        stamp, signature = (part.split("=", 1)[1] for part in headers["X-Gobysend-Signature"].split(","))
        expected = hmac.new(step.hook_secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        self.assertEqual(signature, expected)
        self.assertEqual(headers["X-Gobysend-Timestamp"], stamp)
        self.assertEqual(headers["Idempotency-Key"], f"journey-{journey.id}-{step.id}-0")
        payload = json.loads(body)
        self.assertEqual(
            payload["contact"],
            {"id": self.contacts[1].id, "name": "Contact 1", "email": "c1@example.com", "phone": None},
        )
        self.assertEqual(payload["campaign"], {"id": campaign.id, "name": "Promo"})
        self.assertEqual(payload["step"]["id"], step.id)
        self.assertEqual(payload["data"], {"order": "A-17"})
        self.assertEqual(payload["record"], {"name": "SO017"})
        self.assertEqual(payload["extra"], {"order": "A-17", "greeting": "Hi Contact 1"})
        self.assertEqual((call.state, call.attempts, call.status_code), ("done", 1, 200))
        # The job woke the journey: it goes on at once with the next step.
        self.assertEqual(journey.wake_at, MONDAY_MORNING_UTC)
        self.advance(MONDAY_MORNING_UTC)
        self.assertEqual(journey.state, "completed")
        self.assertEqual(journey.message_ids.body_template, "After the call")

    def test_server_errors_are_retried_with_backoff_then_the_journey_fails(self):
        campaign = self.hook_campaign()
        journey = campaign.journey_ids
        call = journey.call_ids
        self.receiver.answers.extend([(503, b"busy"), (500, b"oops"), (502, b"down")])
        self.perform()
        self.assertEqual((call.state, call.attempts), ("queued", 1))
        self.assertEqual(call.next_attempt_at, MONDAY_MORNING_UTC + MINUTE)
        self.assertEqual((journey.state, journey.wake_at), ("waiting", MONDAY_MORNING_UTC + MINUTE))
        # Not yet due: nothing is sent again.
        self.perform(MONDAY_MORNING_UTC + MINUTE / 2)
        self.assertEqual(len(self.receiver.requests), 1)

        self.advance(MONDAY_MORNING_UTC + MINUTE)
        self.perform(MONDAY_MORNING_UTC + MINUTE)
        self.assertEqual((call.state, call.attempts, call.status_code), ("queued", 2, 500))
        self.assertEqual(call.next_attempt_at, MONDAY_MORNING_UTC + 6 * MINUTE)
        self.advance(MONDAY_MORNING_UTC + 6 * MINUTE)
        self.perform(MONDAY_MORNING_UTC + 6 * MINUTE)
        self.assertEqual((call.state, call.attempts), ("failed", 3))
        self.advance(MONDAY_MORNING_UTC + 6 * MINUTE)
        self.assertEqual(journey.state, "failed")
        self.assertIn("HTTP 502", journey.reason)
        self.assertIn("after 3 attempts", journey.reason)
        self.assertEqual(len(self.receiver.requests), 3)
        self.assertEqual({request[1]["Idempotency-Key"] for request in self.receiver.requests}, {call.idempotency_key})
        self.assertFalse(journey.message_ids, "the journey stopped at the failed step")
        self.assertEqual(campaign.journeys_failed, 1)
        action = campaign.action_view_failed_journeys()
        self.assertEqual(self.env["gobysend.journey"].search(action["domain"] + [("state", "=", "failed")]), journey)

        # Only a campaign manager may retry; the journey runs the step again as a new iteration.
        with self.assertRaisesRegex(AccessError, "Only campaign managers may retry journeys"):
            journey.with_user(self.user_a).action_retry()
        journey.with_user(self.manager_a).action_retry()
        self.assertEqual((journey.state, journey.iteration), ("active", 1))
        self.advance(MONDAY_MORNING_UTC + 7 * MINUTE)
        self.perform(MONDAY_MORNING_UTC + 7 * MINUTE)
        self.advance(MONDAY_MORNING_UTC + 7 * MINUTE)
        self.assertEqual(journey.state, "completed")
        self.assertEqual(len(journey.call_ids), 2)
        self.assertEqual(self.receiver.requests[-1][1]["Idempotency-Key"], call.idempotency_key[:-1] + "1")
        self.assertEqual(
            journey.log_ids.filtered(lambda log: log.step_id.kind == "webhook").mapped("outcome"), ["fail", "done"]
        )

    def test_client_error_fails_at_once_but_rate_limit_is_retried(self):
        campaign = self.hook_campaign()
        journey = campaign.journey_ids
        self.receiver.answers.append((429, b"slow down"))
        self.perform()
        self.assertEqual(journey.call_ids.state, "queued")
        self.advance(MONDAY_MORNING_UTC + MINUTE)
        self.receiver.answers.append((404, b"no such hook"))
        self.perform(MONDAY_MORNING_UTC + MINUTE)
        self.assertEqual((journey.call_ids.state, journey.call_ids.answer), ("failed", "no such hook"))
        self.advance(MONDAY_MORNING_UTC + MINUTE)
        self.assertEqual(journey.state, "failed")
        self.assertIn("HTTP 404", journey.reason)

    def test_manager_retries_many_failed_journeys_from_the_list(self):
        campaign = self.hook_campaign(hook_retry_delays="")
        self.enter(campaign, self.contacts[1], {})
        journeys_ = campaign.journey_ids
        self.receiver.answers.extend([(410, b"gone"), (410, b"gone")])
        self.perform()
        self.advance(MONDAY_MORNING_UTC)
        self.assertEqual(set(journeys_.mapped("state")), {"failed"})
        retry = self.env.ref("gobysend_automation.gobysend_journey_action_retry")
        self.assertEqual(retry.binding_model_id.model, "gobysend.journey")
        retry.with_user(self.manager_a).with_context(active_model="gobysend.journey", active_ids=journeys_.ids).run()
        self.assertEqual(set(journeys_.mapped("state")), {"active"})
        self.assertEqual(set(journeys_.mapped("iteration")), {1})

    def test_stopped_journey_calls_no_one(self):
        campaign = self.hook_campaign()
        campaign.journey_ids.with_user(self.manager_a).action_exit()
        self.perform()
        self.assertEqual(self.receiver.requests, [])
        self.assertEqual(campaign.journey_ids.call_ids.attempts, 0)

    def test_private_address_is_refused_unless_an_administrator_allows_it(self):
        self.env["ir.config_parameter"].set_param(ALLOWED_NETWORKS_PARAMETER, "")
        campaign = self.hook_campaign()
        journey = campaign.journey_ids
        self.perform()
        self.advance(MONDAY_MORNING_UTC)
        self.assertEqual(self.receiver.requests, [])
        self.assertEqual(journey.state, "failed")
        self.assertIn("loopback", journey.reason)
        self.assertIn(ALLOWED_NETWORKS_PARAMETER, journey.reason)
        self.assertEqual(journey.call_ids.attempts, 1, "refused at once, not retried")

    def test_oversized_answer_is_refused(self):
        campaign = self.hook_campaign()
        self.receiver.answers.append((200, b"x" * (MAX_ANSWER_BYTES + 1)))
        self.perform()
        self.advance(MONDAY_MORNING_UTC)
        journey = campaign.journey_ids
        self.assertEqual(journey.state, "failed")
        self.assertIn("more than 1024 KiB", journey.reason)

    def test_interrupted_call_is_made_again_with_the_same_key(self):
        campaign = self.hook_campaign()
        journey = campaign.journey_ids
        self.env.flush_all()
        # A worker claims the call (the attempt is recorded) and dies before its outcome is written.
        claim = self.Call._claim_due(10, MONDAY_MORNING_UTC)
        self.assertEqual(claim.ids, journey.call_ids.ids)
        self.env.invalidate_all()
        self.assertEqual((journey.call_ids.state, journey.call_ids.attempts), ("sending", 1))
        # Still beating: nobody else makes it.
        self.perform(MONDAY_MORNING_UTC + MINUTE)
        self.assertEqual(self.receiver.requests, [])
        # The journey looks again after a while and asks for the job that recovers the call.
        jobs = self.env["queue.job"].search([("method_name", "=", "_job_perform")])
        jobs.unlink()
        self.advance(journey.wake_at)
        self.assertTrue(self.env["queue.job"].search([("method_name", "=", "_job_perform")]))
        self.perform(journey.wake_at)
        ((_path, headers, _body),) = self.receiver.requests
        self.assertEqual(headers["Idempotency-Key"], journey.call_ids.idempotency_key)
        self.assertEqual(headers["X-Gobysend-Attempt"], "2")
        self.assertEqual(journey.call_ids.state, "done")

    def test_bad_settings_are_refused_with_a_sentence(self):
        campaign = self.hook_campaign()
        step = campaign.step_ids.filtered(lambda s: s.kind == "webhook")

        def refused(values, pattern):
            with self.subTest(values=values), self.assertRaisesRegex(ValidationError, pattern), self.cr.savepoint():
                step.write(values)

        for url in ("ftp://example.com/hook", "example.com/hook", "https://", "https://exa mple.com", "http://a:b/"):
            refused({"hook_url": url}, "webhook URL must be an http")
        refused({"hook_retry_delays": "1,x"}, "“x” is not a number of minutes")
        refused({"hook_retry_delays": "0"}, "“0” is not a number of minutes")
        refused({"hook_payload": '["not", "an object"]'}, "must be a JSON object")
        refused({"hook_payload": '{"order": "{{ data.order "}'}, "error on line 1")

    def test_template_error_fails_the_journey_with_the_reason(self):
        campaign = self.hook_campaign(hook_payload='{"total": "{{ data.nothing.deeper }}"}')
        journey = self.enter(campaign, self.contacts[1], {"data": {"total": 1}})
        self.assertEqual(journey.state, "failed")
        self.assertTrue(journey.reason)
        self.assertFalse(journey.call_ids)


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestNotifyStep(CampaignCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The embedded outbox records a message as sent without leaving Odoo; the Slack and
        # chat-bot providers themselves are tested in gobysend_channels.
        cls.team = cls.env["gobysend.channel"].create(
            {"name": "Sales team", "workspace_id": cls.workspace_a.id, "channel_type": "slack", "state": "enabled"}
        )

    def notify_campaign(self):
        return self.launch(
            self.campaign(
                [
                    {"kind": "notify", "channel_id": self.team.id, "body": "{{ contact.name }} needs a call"},
                    {"kind": "send", "channel_id": self.sms.id, "body": "After the notification"},
                ],
                partner_domain=f"[('id', '=', {self.contacts[0].id})]",
            )
        )

    def test_notification_goes_to_the_team_channel_through_the_outbox(self):
        offered = {kind["key"]: kind for kind in self.env["gobysend.campaign.step"].workflow_step_kinds()}
        self.assertEqual(offered["notify"]["label"], "Notify the team")
        campaign = self.notify_campaign()
        step = campaign.step_ids.filtered(lambda s: s.kind == "notify")
        self.assertEqual(step.summary, "Sales team: {{ contact.name }} needs a call")
        journey = campaign.journey_ids
        message = journey.message_ids
        self.assertEqual((message.channel_id, message.state), (self.team, "queued"))
        self.assertEqual(journey.state, "waiting", "the journey waits until the team got it")
        message._dispatch(MONDAY_MORNING_UTC)
        self.assertEqual(message.state, "sent", message.reason)
        self.assertEqual(message.body, "Contact 0 needs a call")
        self.advance(MONDAY_MORNING_UTC + MINUTE)
        self.assertEqual(journey.state, "completed")
        self.assertEqual(len(journey.message_ids), 2, "one notification, then the SMS")

    def test_notification_that_fails_fails_the_journey_until_a_manager_retries(self):
        campaign = self.notify_campaign()
        journey = campaign.journey_ids
        message = journey.message_ids
        message.write({"state": "failed", "reason": "Slack refused the message: no_service"})
        self.advance(MONDAY_MORNING_UTC + MINUTE)
        self.assertEqual(journey.state, "failed")
        self.assertEqual(journey.reason, "Slack refused the message: no_service")
        journey.with_user(self.manager_a).action_retry()
        self.advance(MONDAY_MORNING_UTC + 2 * MINUTE)
        retried = journey.message_ids - message
        self.assertEqual(retried.state, "queued", "a new notification, not the failed one again")
        retried._dispatch(MONDAY_MORNING_UTC + 2 * MINUTE)
        self.advance(MONDAY_MORNING_UTC + 3 * MINUTE)
        self.assertEqual(journey.state, "completed")

    def test_only_team_channels_can_be_notified(self):
        with self.assertRaisesRegex(ValidationError, "choose a Slack or chat-bot channel"):
            self.campaign([{"kind": "notify", "channel_id": self.sms.id, "body": "x"}])
        with self.assertRaisesRegex(ValidationError, "write the notification"):
            self.campaign([{"kind": "notify", "channel_id": self.team.id}])


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestJourneyOutlivesItsRecord(CampaignCase):
    def test_deleted_lead_leaves_the_journey_going_on_its_snapshot(self):
        stage = self.env["crm.stage"].create({"name": "Qualified"})
        todo = self.env.ref("mail.mail_activity_data_todo")
        campaign = self.launch(
            self.campaign(
                [
                    {"kind": "wait", "timing": "delay", "delay_amount": 1, "delay_unit": "days"},
                    {"kind": "send", "channel_id": self.sms.id, "body": "About {{ record.name }}"},
                    {"kind": "lead_stage", "lead_stage_id": stage.id},
                    {
                        "kind": "activity",
                        "activity_type_id": todo.id,
                        "activity_on": "record",
                        "activity_summary": "To",
                    },
                ],
                partner_domain=f"[('id', '=', {self.contacts[0].id})]",
            )
        )
        Lead = self.env["crm.lead"]
        kept, deleted = Lead.create(
            [
                {"name": "Kept deal", "partner_id": self.contacts[1].id, "type": "opportunity"},
                {"name": "Big deal", "partner_id": self.contacts[2].id, "type": "opportunity"},
            ]
        )
        Journey = self.env["gobysend.journey"]
        journeys_ = Journey.browse(
            Journey._enter(
                campaign,
                [
                    {
                        "partner_id": lead.partner_id.id,
                        "res_model": "crm.lead",
                        "res_id": lead.id,
                        "context": {"record": {"name": lead.name}},
                    }
                    for lead in (kept, deleted)
                ],
                run=True,
            )
        )
        deleted_journey = journeys_.filtered(lambda journey: journey.res_id == deleted.id)
        deleted.unlink()

        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(days=1))
        self.assertEqual(set(journeys_.mapped("state")), {"completed"})
        message = deleted_journey.message_ids
        message._dispatch(MONDAY_MORNING_UTC + datetime.timedelta(days=1))
        self.assertEqual(message.body, "About Big deal", "the template reads the record's snapshot")
        skipped = deleted_journey.log_ids.filtered(lambda log: log.step_id.kind in ("lead_stage", "activity"))
        self.assertEqual(
            skipped.mapped("reason"),
            [
                "Skipped: the lead that fired this journey was deleted.",
                "Skipped: the record that fired this journey was deleted.",
            ],
        )
        self.assertFalse(self.env["mail.activity"].search([("res_id", "=", self.contacts[2].id)]))
        # The journey whose lead is still there did both.
        self.assertEqual(kept.stage_id, stage)
        self.assertEqual(kept.activity_ids.summary, "To")


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestWaitRelativeToADate(CampaignCase):
    def anchored_campaign(self, wait):
        step = {"kind": "wait", "timing": "anchor", "delay_amount": 3, "delay_unit": "days"}
        step.update(wait)
        return self.launch(
            self.campaign(
                [step, {"kind": "send", "channel_id": self.sms.id, "body": "Your contract ends soon"}],
                model_id=self.env["ir.model"]._get_id("crm.lead"),
                # A campaign that runs until stopped (a manual one with no audience would be done at once).
                trigger_kind="event",
                event_name="contract_signed",
                reentry="every_time",
            )
        )

    def test_three_days_before_the_lead_closes_at_nine_local_following_its_date(self):
        deadline = self.env["ir.model.fields"]._get("crm.lead", "date_deadline")
        campaign = self.anchored_campaign(
            {"anchor_field_id": deadline.id, "anchor_direction": "before", "anchor_use_time": True, "time_of_day": 9}
        )
        step = campaign.step_ids[0]
        self.assertEqual(step.summary, "3 Days Before Expected Closing 09:00")
        Lead = self.env["crm.lead"]
        later, past = Lead.create(
            [
                {"name": "Renewal", "partner_id": self.contacts[0].id, "date_deadline": "2026-12-10"},
                {"name": "Late", "partner_id": self.contacts[1].id, "date_deadline": "2026-11-20"},
            ]
        )
        Journey = self.env["gobysend.journey"]
        waiting, gone_on = Journey.browse(
            Journey._enter(
                campaign,
                [
                    {"partner_id": lead.partner_id.id, "res_model": "crm.lead", "res_id": lead.id}
                    for lead in (later, past)
                ],
                run=True,
            )
        )
        # 7 December 09:00 in Ho Chi Minh City is 02:00 UTC; the journey looks again every day meanwhile.
        self.assertEqual(waiting.state, "waiting")
        self.assertEqual(waiting.wake_at, MONDAY_MORNING_UTC + datetime.timedelta(days=1))
        # A date already past: the journey goes on at once and says why.
        self.assertEqual(gone_on.state, "completed")
        self.assertIn("already passed", gone_on.log_ids[0].reason)

        # The deal closes earlier: the wake-up follows the date at the next look.
        later.date_deadline = "2026-11-28"
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(days=1))
        self.assertEqual(waiting.state, "waiting")
        self.assertEqual(waiting.wake_at, datetime.datetime(2026, 11, 25, 2, 0))
        self.assertFalse(waiting.message_ids)
        self.advance(datetime.datetime(2026, 11, 25, 2, 0))
        self.assertEqual(waiting.state, "completed")
        self.assertEqual(len(waiting.message_ids), 1)

    def test_after_a_date_attribute_of_the_contact(self):
        self.env["gobysend.attribute"].create(
            {"workspace_id": self.workspace_a.id, "key": "contract_end", "value_type": "date"}
        )
        self.ingest.identify(
            self.workspace_a, {"email": self.contacts[0].email, "attributes": {"contract_end": "2026-11-22"}}
        )
        attribute = self.env["gobysend.attribute"].search([("key", "=", "contract_end")])
        campaign = self.anchored_campaign(
            {
                "anchor_source": "attribute",
                "anchor_attribute_id": attribute.id,
                "anchor_direction": "after",
                "delay_amount": 2,
            }
        )
        Journey = self.env["gobysend.journey"]
        with_date, without = Journey.browse(
            Journey._enter(
                campaign, [{"partner_id": self.contacts[0].id}, {"partner_id": self.contacts[1].id}], run=True
            )
        )
        # 22 November + 2 days, the start of the contact's day: 24 November 00:00 local, 23 November 17:00 UTC.
        self.assertEqual(with_date.wake_at, datetime.datetime(2026, 11, 23, 17, 0))
        self.assertEqual(without.state, "completed")
        self.assertIn("No date", without.log_ids[0].reason)

    def test_settings_are_checked(self):
        with self.assertRaisesRegex(ValidationError, "choose a date field of the triggering record"):
            self.campaign([{"kind": "wait", "timing": "anchor"}])
        with self.assertRaisesRegex(ValidationError, "put a wait step relative to the date before it"):
            self.campaign([{"kind": "send", "timing": "anchor", "channel_id": self.sms.id, "body": "x"}])
