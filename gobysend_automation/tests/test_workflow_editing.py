"""Editing the workflow of a running campaign, and test journeys."""

import datetime

from freezegun import freeze_time

from odoo import Command
from odoo.exceptions import UserError
from odoo.tests import tagged

from .test_campaign import MONDAY_MORNING_UTC, CampaignCase

LATER = MONDAY_MORNING_UTC + datetime.timedelta(days=2)


@freeze_time(MONDAY_MORNING_UTC)
@tagged("post_install", "-at_install", "time_sensitive")
class TestEditingARunningWorkflow(CampaignCase):
    def setUp(self):
        super().setUp()
        self.Step = self.env["gobysend.campaign.step"]
        self.Journey = self.env["gobysend.journey"]

    def send(self, body):
        return {"kind": "send", "channel_id": self.sms.id, "body": body}

    def wait(self, days=1):
        return {"kind": "wait", "timing": "delay", "delay_amount": days, "delay_unit": "days"}

    def waiting_campaign(self, *after):
        """A running campaign whose five journeys got "First" and wait at the second step."""
        campaign = self.launch(self.campaign([self.send("First"), self.wait(), *after]))
        self.advance(MONDAY_MORNING_UTC)
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"waiting"})
        return campaign

    def steps(self, campaign):
        return campaign.step_ids.sorted(lambda step: (step.sequence, step.id))

    def bodies(self, journey):
        return journey.message_ids.sorted("id").mapped("body_template")

    def logs_are_unique(self, campaign):
        keys = campaign.journey_ids.log_ids.mapped(lambda log: (log.journey_id.id, log.step_id.id, log.iteration))
        self.assertEqual(len(keys), len(set(keys)), "a step runs once per journey and iteration")

    def test_a_step_inserted_after_the_waiting_step_is_reached(self):
        campaign = self.waiting_campaign(self.send("Last"))
        wait = self.steps(campaign)[1]
        position = self.Step.workflow_insert_position(campaign.id, after_step_id=wait.id)
        inserted = self.Step.create(dict(self.send("Inserted"), campaign_id=campaign.id, **position))
        self.advance(LATER)
        for journey in campaign.journey_ids:
            self.assertEqual(self.bodies(journey), ["First", "Inserted", "Last"])
            self.assertEqual(journey.state, "completed")
        self.assertEqual(inserted.done_count, 5)
        self.logs_are_unique(campaign)

    def test_removing_the_waiting_step_moves_its_journeys_to_the_next_step(self):
        campaign = self.waiting_campaign(self.send("Last"))
        first, wait, last = self.steps(campaign)
        preview = self.Step.workflow_removal_preview(wait.ids)
        self.assertEqual(preview["count"], 5)
        self.assertIn("5 journeys waiting here will move to “Send", preview["message"])
        wait.unlink()
        self.assertEqual(campaign.journey_ids.step_id, last, "they stand at the next step, not back at the top")
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"active"})
        self.advance(MONDAY_MORNING_UTC)
        for journey in campaign.journey_ids:
            self.assertEqual(self.bodies(journey), ["First", "Last"])
            self.assertEqual(journey.state, "completed")
            self.assertEqual(journey.log_ids.step_id, first | last)
        self.logs_are_unique(campaign)

    def test_removing_the_last_step_exits_the_journeys_waiting_there(self):
        campaign = self.waiting_campaign()
        wait = self.steps(campaign)[1]
        self.assertIn("5 journeys waiting here will exit", self.Step.workflow_removal_preview(wait.ids)["message"])
        wait.unlink()
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"exited"})
        self.assertIn("was removed from the workflow", campaign.journey_ids[0].reason)
        self.advance(LATER)
        self.assertEqual(len(campaign.journey_ids.message_ids), 5, "nothing runs again")

    def test_removing_a_condition_removes_its_branches_and_moves_their_journeys_after_it(self):
        """A condition goes with the steps of its branches; the journeys waiting on a branch go on
        with the step after the condition, where they would have arrived after the branch."""
        tag = self.env["res.partner.category"].create({"name": "VIP"})
        self.contacts[:2].category_id = tag
        campaign = self.campaign([{"kind": "condition", "condition_kind": "tag", "tag_id": tag.id}, self.send("Last")])
        condition, last = self.steps(campaign)
        branch_wait = self.Step.create(
            dict(self.wait(3), campaign_id=campaign.id, parent_id=condition.id, branch="yes")
        )
        self.launch(campaign)
        self.advance(MONDAY_MORNING_UTC)
        vips = campaign.journey_ids.filtered(lambda journey: journey.partner_id in self.contacts[:2])
        self.assertEqual(vips.step_id, branch_wait)
        self.assertEqual(set((campaign.journey_ids - vips).mapped("state")), {"completed"})
        preview = self.Step.workflow_removal_preview(condition.ids)
        self.assertEqual(preview["count"], 2)
        self.assertIn("will move to “Send", preview["message"])
        condition.unlink()
        self.assertFalse(branch_wait.exists())
        self.assertEqual(vips.step_id, last)
        self.advance(MONDAY_MORNING_UTC)
        for journey in vips:
            self.assertEqual(self.bodies(journey), ["Last"])
            self.assertEqual(journey.state, "completed")
        self.logs_are_unique(campaign)

    def test_journeys_claimed_by_a_running_batch_are_not_moved(self):
        campaign = self.waiting_campaign(self.send("Last"))
        wait = self.steps(campaign)[1]
        claim = self.Journey._claim_due(1000, LATER)
        self.assertEqual(len(claim), 5)
        with self.assertRaisesRegex(UserError, "being advanced right now"):
            wait.unlink()
        self.assertTrue(wait.exists())
        self.env.invalidate_all()
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"running"})
        self.assertEqual(campaign.journey_ids.step_id, wait)

    def test_the_form_warns_before_a_step_with_journeys_is_removed_from_the_list(self):
        campaign = self.waiting_campaign(self.send("Last"))
        first, wait, last = self.steps(campaign)
        edited = campaign.new({"step_ids": [Command.set((first | last).ids)]}, origin=campaign)
        warning = edited._onchange_step_ids_removal()["warning"]
        self.assertIn("5 journeys waiting here will move to “Send", warning["message"])
        edited = campaign.new({"step_ids": [Command.set((first | wait).ids)]}, origin=campaign)
        self.assertIsNone(edited._onchange_step_ids_removal(), "no journey stands at the last step")


@freeze_time(MONDAY_MORNING_UTC)
@tagged("post_install", "-at_install", "time_sensitive")
class TestTestJourneys(CampaignCase):
    def test_a_test_journey_runs_the_workflow_with_short_waits_and_counts_nowhere(self):
        campaign = self.campaign(
            [
                {"kind": "send", "channel_id": self.sms.id, "body": "First"},
                {"kind": "wait", "timing": "delay", "delay_amount": 7, "delay_unit": "days"},
                {"kind": "send", "channel_id": self.sms.id, "body": "Second"},
            ]
        )
        first, wait, second = campaign.step_ids.sorted("sequence")
        wizard = self.env["gobysend.campaign.test.journey.wizard"].create(
            {"campaign_id": campaign.id, "partner_id": self.contacts[3].id}
        )
        journey = self.env["gobysend.journey"].browse(wizard.action_start()["res_id"])
        self.assertTrue(journey.is_test)
        self.assertEqual(campaign.state, "draft", "a test journey runs before the campaign is launched")
        self.advance(MONDAY_MORNING_UTC)
        self.assertEqual((journey.state, journey.step_id), ("waiting", wait))
        self.assertEqual(journey.wait_until, MONDAY_MORNING_UTC + datetime.timedelta(minutes=1), "the wait is short")
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(minutes=2))
        self.assertEqual(journey.state, "completed")
        self.assertEqual(journey.message_ids.sorted("id").mapped("body_template"), ["First", "Second"])
        self.assertTrue(all(journey.message_ids.mapped("is_test")))
        # Out of every figure: the campaign's, the steps', the journeys' pivot and graph.
        campaign.invalidate_recordset()
        self.assertEqual((campaign.journey_count, campaign.journeys_completed, campaign.message_count), (0, 0, 0))
        for step in (first, wait, second):
            step.invalidate_recordset()
            self.assertEqual((step.done_count, step.journeys_here, step.sent_count), (0, 0, 0))
        domain = campaign.action_view_journeys()["domain"]
        self.assertFalse(self.env["gobysend.journey"].search_count(domain))
        self.assertFalse(self.env["gobysend.message"].search_count(campaign.action_view_statistics()["domain"]))

    def test_a_test_address_gets_a_contact(self):
        campaign = self.campaign()
        wizard = self.env["gobysend.campaign.test.journey.wizard"].create(
            {"campaign_id": campaign.id, "partner_id": False, "email": "tester@example.com"}
        )
        journey = self.env["gobysend.journey"].browse(wizard.action_start()["res_id"])
        self.assertEqual(journey.partner_id.email, "tester@example.com")
        wizard = self.env["gobysend.campaign.test.journey.wizard"].create(
            {"campaign_id": campaign.id, "partner_id": False, "email": "not an address"}
        )
        with self.assertRaisesRegex(UserError, "test address"):
            wizard.action_start()
