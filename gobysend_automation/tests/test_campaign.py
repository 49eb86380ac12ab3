import datetime

from freezegun import freeze_time

from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged

from .. import journeys
from ..kinds.triggers import record_entries
from .common import GobysendCase

# A Monday, 10:00 in Ho Chi Minh City (UTC+7).
MONDAY_MORNING_UTC = datetime.datetime(2026, 11, 23, 3, 0)


class CampaignCase(GobysendCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workspace_a.write({"token_balance": 1000, "tz": "Asia/Ho_Chi_Minh"})
        Partner = cls.env["res.partner"]
        cls.contacts = Partner.create(
            [{"name": f"Contact {n}", "email": f"c{n}@example.com", "tz": "Asia/Ho_Chi_Minh"} for n in range(5)]
        )
        cls.env["gobysend.subscription"].create(
            [{"workspace_id": cls.workspace_a.id, "partner_id": partner.id} for partner in cls.contacts]
        )
        cls.outsider = Partner.create({"name": "Not subscribed", "email": "out@example.com"})
        cls.sms = cls.env["gobysend.channel"].create(
            {
                "name": "SMS",
                "workspace_id": cls.workspace_a.id,
                "channel_type": "sms",
                "state": "enabled",
                "token_cost": 2,
            }
        )

    def setUp(self):
        super().setUp()
        # The engine's workers open cursors of their own: in the tests, savepoints of the test's
        # transaction, so that they see its data.
        self.registry.enter_test_mode(self.env.cr)
        self.addCleanup(self.registry.leave_test_mode)

    def campaign(self, steps=None, **values):
        steps = steps or [{"kind": "send", "channel_id": self.sms.id, "body": "Hi {{ contact.name }}"}]
        defaults = {"name": "Promo", "workspace_id": self.workspace_a.id, "trigger_kind": "manual"}
        defaults.update(values)
        campaign = self.env["gobysend.campaign"].create(defaults)
        for sequence, step in enumerate(steps):
            self.env["gobysend.campaign.step"].create(dict(step, campaign_id=campaign.id, sequence=sequence))
        return campaign

    def launch(self, campaign):
        campaign.action_launch()
        while campaign._fan_out_chunk():
            pass
        return campaign

    def advance(self, now=None):
        Journey = self.env["gobysend.journey"]
        self.env.flush_all()
        record_entries.enter_noted(self.env.registry)
        steps = 0
        while True:
            claim = Journey._claim_due(1000, now)
            if not claim:
                return steps
            steps += Journey._advance_claimed(claim, now)
            self.env.invalidate_all()


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestManualCampaign(CampaignCase):
    def test_launch_queues_one_journey_and_message_per_contact(self):
        campaign = self.launch(self.campaign())
        journeys_ = campaign.journey_ids
        self.assertEqual(journeys_.partner_id, self.contacts)
        self.assertEqual(set(journeys_.mapped("state")), {"completed"})
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        self.assertEqual(messages.partner_id, self.contacts)
        self.assertEqual(set(messages.mapped("state")), {"queued"})
        self.assertEqual(messages.journey_id, journeys_)
        self.assertEqual(len(journeys_.log_ids), 5)
        self.assertEqual(campaign.fan_out_done, 5)
        self.assertEqual(campaign.progress_text, "5 of 5 queued")
        Journey = self.env["gobysend.journey"]
        Journey._check_campaigns_done(campaign.ids)
        self.assertEqual(campaign.state, "running", "its messages are still in the outbox")
        messages.write({"state": "sent"})
        Journey._check_campaigns_done(campaign.ids)
        self.assertEqual(campaign.state, "done")

    def test_audience_of_segment_tags_and_filter(self):
        tag = self.env["res.partner.category"].create({"name": "VIP"})
        self.contacts[:2].category_id = tag
        campaign = self.campaign(tag_ids=[(6, 0, tag.ids)])
        self.assertEqual(campaign.audience_count, 2)
        self.assertEqual(campaign.token_estimate, 4)
        campaign.partner_domain = f"[('id', '=', {self.contacts[0].id})]"
        self.assertEqual(campaign.audience_count, 1)
        self.launch(campaign)
        self.assertEqual(campaign.journey_ids.partner_id, self.contacts[0])

    def test_launch_refused_when_tokens_do_not_cover_it(self):
        self.workspace_a.sudo().token_balance = 5
        campaign = self.campaign()
        with self.assertRaisesRegex(UserError, "about 10.00 tokens"):
            campaign.action_launch()
        self.assertEqual(campaign.state, "draft")
        self.assertFalse(campaign.journey_ids)

    def test_wait_then_send(self):
        campaign = self.launch(
            self.campaign(
                [
                    {"kind": "wait", "timing": "delay", "delay_amount": 2, "delay_unit": "days"},
                    {"kind": "send", "channel_id": self.sms.id, "body": "Later"},
                ]
            )
        )
        journey = campaign.journey_ids[0]
        self.assertEqual(journey.state, "waiting")
        self.assertEqual(journey.wake_at, MONDAY_MORNING_UTC + datetime.timedelta(days=2))
        self.assertFalse(self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)]))
        self.assertEqual(self.advance(MONDAY_MORNING_UTC + datetime.timedelta(days=1)), 0)
        self.assertEqual(self.advance(MONDAY_MORNING_UTC + datetime.timedelta(days=2)), 10)
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"completed"})
        self.assertEqual(self.env["gobysend.message"].search_count([("campaign_id", "=", campaign.id)]), 5)

    def test_wait_until_local_time_on_allowed_weekday(self):
        step = {"kind": "wait", "timing": "time_of_day", "time_of_day": 9.0, "on_mon": False, "on_tue": False}
        campaign = self.launch(self.campaign([step, {"kind": "send", "channel_id": self.sms.id, "body": "x"}]))
        # Monday 10:00 local: 09:00 has passed, Tuesday is not allowed: Wednesday 09:00 local.
        self.assertEqual(campaign.journey_ids[0].wake_at, datetime.datetime(2026, 11, 25, 2, 0))

    def test_once_per_contact(self):
        campaign = self.launch(self.campaign())
        Journey = self.env["gobysend.journey"]
        again = Journey._enter(campaign, [{"partner_id": self.contacts[0].id}], run=True)
        self.assertFalse(again)
        campaign.reentry = "every_time"
        self.assertTrue(Journey._enter(campaign, [{"partner_id": self.contacts[0].id}], run=True))

    def test_pause_holds_and_cancel_cancels_messages(self):
        campaign = self.launch(self.campaign())
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        campaign.action_pause()
        self.assertEqual(set(messages.mapped("state")), {"held"})
        campaign.action_resume()
        self.assertEqual(set(messages.mapped("state")), {"queued"})
        campaign.action_cancel()
        self.assertEqual(set(messages.mapped("state")), {"cancelled"})
        self.assertEqual(campaign.state, "cancelled")

    def test_exit_step_ends_and_later_steps_do_not_run(self):
        campaign = self.launch(
            self.campaign([{"kind": "exit"}, {"kind": "send", "channel_id": self.sms.id, "body": "never"}])
        )
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"exited"})
        self.assertFalse(self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)]))

    def test_nothing_follows_an_exit(self):
        campaign = self.campaign([{"kind": "exit"}])
        with self.assertRaisesRegex(ValidationError, "ends the journey"):
            self.env["gobysend.campaign.step"].create(
                {"campaign_id": campaign.id, "kind": "wait", "timing": "delay", "parent_id": campaign.step_ids.id}
            )

    def test_channel_of_another_workspace_is_refused(self):
        other = self.env["gobysend.channel"].create(
            {"name": "B SMS", "workspace_id": self.workspace_b.id, "channel_type": "sms"}
        )
        with self.assertRaisesRegex(ValidationError, "another workspace"):
            self.campaign([{"kind": "send", "channel_id": other.id, "body": "x"}])

    def test_stale_claim_is_recovered_and_nothing_runs_twice(self):
        campaign = self.launch(
            self.campaign(
                [
                    {"kind": "wait", "timing": "delay", "delay_amount": 1, "delay_unit": "hours"},
                    {"kind": "send", "channel_id": self.sms.id, "body": "once"},
                ]
            )
        )
        later = MONDAY_MORNING_UTC + datetime.timedelta(hours=2)
        Journey = self.env["gobysend.journey"]
        self.env.flush_all()
        stale = Journey._claim_due(1000, later)
        self.assertEqual(len(stale), 5)
        # The worker stops; its claim goes stale and recovery gives the journeys back.
        self.assertEqual(Journey._recover_interrupted(later + journeys.claims.STALE_AFTER * 2), 5)
        self.advance(later)
        self.assertEqual(self.env["gobysend.message"].search_count([("campaign_id", "=", campaign.id)]), 5)
        # The stopped worker wakes up: its claim is gone, it writes nothing.
        self.assertEqual(Journey._advance_claimed(stale, later), 0)
        self.assertEqual(self.env["gobysend.message"].search_count([("campaign_id", "=", campaign.id)]), 5)
        logs = self.env["gobysend.journey.log"].search([("journey_id", "in", campaign.journey_ids.ids)])
        self.assertEqual(len(logs), 10)


@freeze_time(MONDAY_MORNING_UTC)
class TestBulkCampaign(CampaignCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.inapp = cls.env["gobysend.channel"].create(
            {"name": "App", "workspace_id": cls.workspace_a.id, "channel_type": "inapp", "state": "enabled"}
        )
        Lead = cls.env["crm.lead"]
        cls.open_lead = Lead.create({"name": "Open", "partner_id": cls.contacts[0].id})
        won_stage = cls.env["crm.stage"].search([("is_won", "=", True)], limit=1)
        cls.won_lead = Lead.create({"name": "Won", "partner_id": cls.contacts[1].id, "stage_id": won_stage.id})
        # A lead of someone outside the workspace is not reached.
        Lead.create({"name": "Outsider", "partner_id": cls.outsider.id})

    def bulk(self, **values):
        step = {
            "kind": "send",
            "channel_id": self.inapp.id,
            "subject": "Sale",
            "body": "Big sale",
            "inapp_kind": "popup",
            "inapp_link": "https://shop.example.com/sale",
        }
        return self.campaign([step], trigger_kind="bulk", **values)

    def test_bulk_to_leads_reaches_open_leads_of_the_workspace_free(self):
        self.workspace_a.sudo().token_balance = 0
        campaign = self.bulk(bulk_audience="leads")
        self.assertEqual(campaign.audience_count, 1)
        self.assertEqual(campaign.token_estimate, 0)
        self.launch(campaign)
        self.assertEqual(campaign.journey_ids.partner_id, self.contacts[0])
        message = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        self.assertEqual(message.token_cost, 0)
        self.assertEqual(message.render_context["inapp"], {"kind": "popup", "link": "https://shop.example.com/sale"})

    def test_bulk_needs_an_inapp_channel(self):
        campaign = self.campaign(trigger_kind="bulk")
        with self.assertRaisesRegex(ValidationError, "in-app channel"):
            campaign.action_launch()

    def test_bad_inapp_link_is_refused(self):
        with self.assertRaisesRegex(ValidationError, "http"):
            self.campaign([{"kind": "send", "channel_id": self.inapp.id, "body": "x", "inapp_link": "javascript:x"}])


@freeze_time(MONDAY_MORNING_UTC)
class TestCampaignGoalAndTest(CampaignCase):
    def test_contacts_reaching_the_goal_leave_converted(self):
        campaign = self.launch(
            self.campaign(
                [
                    {"kind": "wait", "timing": "delay", "delay_amount": 1, "delay_unit": "days"},
                    {"kind": "send", "channel_id": self.sms.id, "body": "Still thinking?"},
                ],
                goal_event_name="order_paid",
            )
        )
        buyer = self.contacts[0]
        self.ingest.track(self.workspace_a, {"email": buyer.email, "name": "order_paid"})
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(days=2))
        journey = campaign.journey_ids.filtered(lambda j: j.partner_id == buyer)
        self.assertEqual((journey.state, journey.converted), ("exited", True))
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        self.assertEqual(messages.partner_id, self.contacts[1:])
        self.assertEqual(campaign.journeys_converted, 1)

    def test_send_test_sends_each_message_once_as_a_test(self):
        campaign = self.campaign(
            [
                {"kind": "send", "channel_id": self.sms.id, "body": "First"},
                {"kind": "wait", "timing": "delay", "delay_amount": 2, "delay_unit": "days"},
                {"kind": "send", "channel_id": self.sms.id, "body": "Second"},
            ]
        )
        wizard = self.env["gobysend.campaign.test.wizard"].create(
            {"campaign_id": campaign.id, "partner_id": self.contacts[2].id}
        )
        action = wizard.action_send()
        messages = self.env["gobysend.message"].search(action["domain"])
        self.assertEqual(messages.mapped("body_template"), ["Second", "First"])
        self.assertTrue(all(messages.mapped("is_test")))
        self.assertEqual(campaign.message_count, 0, "test messages stay out of the statistics")

    def test_segment_of_another_workspace_is_refused(self):
        other = self.env["gobysend.segment"].create({"name": "B's", "workspace_id": self.workspace_b.id})
        with self.assertRaisesRegex(ValidationError, "another workspace"):
            self.campaign(segment_ids=[(6, 0, other.ids)])

    def test_contact_filter_reaching_users_is_refused(self):
        with self.assertRaisesRegex(ValidationError, "user_ids"):
            self.campaign(partner_domain="[('user_ids.login', '=', 'admin')]")

    def test_member_of_another_workspace_cannot_see_the_campaign(self):
        campaign = self.campaign()
        self.assertFalse(self.env["gobysend.campaign"].with_user(self.user_b).search([("id", "=", campaign.id)]))


@freeze_time(MONDAY_MORNING_UTC)
class TestCampaignStates(CampaignCase):
    def two_steps(self, **values):
        return self.campaign(
            [
                {"kind": "wait", "timing": "delay", "delay_amount": 1, "delay_unit": "hours"},
                {"kind": "send", "channel_id": self.sms.id, "body": "Later"},
            ],
            **values,
        )

    def test_scheduled_launch_waits_for_its_time(self):
        campaign = self.two_steps(scheduled_at=MONDAY_MORNING_UTC + datetime.timedelta(hours=3))
        campaign.action_launch()
        self.assertEqual(campaign.state, "scheduled")
        self.assertFalse(campaign.journey_ids)
        Campaign = self.env["gobysend.campaign"]
        self.assertEqual(Campaign._cron_launch_scheduled(), 0)
        with freeze_time(MONDAY_MORNING_UTC + datetime.timedelta(hours=3)):
            self.assertEqual(Campaign._cron_launch_scheduled(), 1)
        self.assertEqual(campaign.state, "running")
        self.assertEqual(campaign.fan_out_total, 5)

    def test_paused_journeys_do_not_advance_until_resumed(self):
        campaign = self.launch(self.two_steps())
        campaign.action_pause()
        later = MONDAY_MORNING_UTC + datetime.timedelta(hours=2)
        self.assertEqual(self.advance(later), 0)
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"waiting"})
        campaign.action_resume()
        self.assertEqual(self.advance(later), 10)
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"completed"})

    def test_cancel_stops_journeys(self):
        campaign = self.launch(self.two_steps())
        campaign.action_cancel()
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"exited"})
        self.assertEqual(self.advance(MONDAY_MORNING_UTC + datetime.timedelta(hours=2)), 0)

    def test_trigger_of_a_launched_campaign_cannot_change(self):
        campaign = self.launch(self.two_steps())
        with self.assertRaises(UserError):
            campaign.trigger_kind = "bulk"

    def test_once_at_a_time_lets_a_contact_in_again_after_its_journey(self):
        campaign = self.launch(self.two_steps(reentry="once_at_a_time"))
        Journey = self.env["gobysend.journey"]
        contact = self.contacts[0]
        self.assertFalse(Journey._enter(campaign, [{"partner_id": contact.id}]))
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(hours=2))
        self.assertTrue(Journey._enter(campaign, [{"partner_id": contact.id}]))
        self.assertEqual(len(campaign.journey_ids.filtered(lambda j: j.partner_id == contact)), 2)

    def test_statistics_per_step(self):
        campaign = self.launch(self.two_steps())
        wait, send = campaign.step_ids.sorted("sequence")
        self.assertEqual((wait.journeys_here, send.journeys_here), (5, 0))
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(hours=2))
        wait.invalidate_recordset()
        send.invalidate_recordset()
        self.assertEqual((wait.done_count, send.done_count), (5, 5))
        self.assertEqual(campaign.journeys_completed, 5)
