import contextlib
import datetime

from freezegun import freeze_time

from odoo.exceptions import ValidationError
from odoo.tests import Form, tagged

from ..kinds.steps.ab_test import in_test_share
from .test_campaign import MONDAY_MORNING_UTC, CampaignCase

DECISION = MONDAY_MORNING_UTC + datetime.timedelta(hours=24)


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestABTestStep(CampaignCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        partners = cls.env["res.partner"].create([{"name": f"P{n}", "email": f"p{n}@example.com"} for n in range(35)])
        cls.env["gobysend.subscription"].create(
            [{"workspace_id": cls.workspace_a.id, "partner_id": partner.id} for partner in partners]
        )

    def ab_campaign(self, metric="open", share=50, **values):
        step = {
            "kind": "ab_test",
            "channel_id": self.sms.id,
            "ab_test_share": share,
            "ab_metric": metric,
            "ab_decision_hours": 24,
            "variant_ids": [(0, 0, {"body": "Hi A"}), (0, 0, {"body": "Hi B"})],
        }
        campaign = self.campaign([step], **values)
        return campaign, campaign.step_ids

    def messages(self, campaign):
        return self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])

    def by_variant(self, campaign, step):
        a, b = step.variant_ids
        messages = self.messages(campaign)
        return messages.filtered(lambda m: m.campaign_variant_id == a), messages.filtered(
            lambda m: m.campaign_variant_id == b
        )

    def test_the_test_share_gets_the_variants_evenly_and_the_others_wait(self):
        campaign, step = self.ab_campaign()
        self.assertEqual(step.variant_ids.mapped("name"), ["A", "B"])
        self.launch(campaign)
        journeys_ = campaign.journey_ids
        self.assertEqual(len(journeys_), 40)
        tested = journeys_.filtered(lambda journey: in_test_share(journey.id, step))
        self.assertTrue(5 <= len(tested) <= 35, len(tested))
        messages = self.messages(campaign)
        self.assertEqual(messages.journey_id, tested)
        sent_a, sent_b = self.by_variant(campaign, step)
        self.assertLessEqual(abs(len(sent_a) - len(sent_b)), 1)
        self.assertEqual(len(sent_a) + len(sent_b), len(tested))
        self.assertEqual(set(sent_a.mapped("body_template")), {"Hi A"})
        self.assertEqual(set(sent_b.mapped("body_template")), {"Hi B"})
        self.assertEqual(set(tested.mapped("state")), {"completed"})
        held = journeys_ - tested
        self.assertEqual(set(held.mapped("state")), {"waiting"})
        self.assertEqual(set(held.mapped("wake_at")), {DECISION})
        self.assertEqual(step.ab_started_at, MONDAY_MORNING_UTC)
        self.assertFalse(step.ab_winner_id)
        self.advance(DECISION - datetime.timedelta(minutes=1))
        self.assertEqual(len(self.messages(campaign)), len(tested), "nobody else is sent anything before the decision")
        self.assertFalse(step.ab_winner_id)

    def test_after_the_decision_time_the_best_open_rate_wins_once_and_the_rest_get_it(self):
        campaign, step = self.launch_and_split()
        variant_a, variant_b = step.variant_ids
        sent_a, sent_b = self.by_variant(campaign, step)
        sent_a.write({"state": "sent"})
        sent_b[:1].write({"state": "opened"})
        (sent_b - sent_b[:1]).write({"state": "delivered"})
        self.assertEqual((variant_b.sent_count, variant_b.opened_count), (len(sent_b), 1))
        self.assertAlmostEqual(variant_b.open_rate, 1 / len(sent_b))
        self.advance(DECISION)
        self.assertEqual(step.ab_winner_id, variant_b)
        self.assertEqual(step.ab_decided_at, DECISION)
        self.assertTrue(variant_b.is_winner)
        self.assertFalse(variant_a.is_winner)
        form = Form(step)
        self.assertEqual(form.ab_winner_id, variant_b)
        with form.variant_ids.edit(1) as line:  # the form shows each variant's figures
            self.assertEqual((line.name, line.sent_count, line.opened_count), ("B", len(sent_b), 1))
        journeys_ = campaign.journey_ids
        self.assertEqual(set(journeys_.mapped("state")), {"completed"})
        messages = self.messages(campaign)
        self.assertEqual(messages.journey_id, journeys_, "one message per journey, none twice")
        self.assertEqual(len(messages), len(journeys_))
        held = messages - sent_a - sent_b
        self.assertEqual(held.campaign_variant_id, variant_b)
        self.assertEqual(set(held.mapped("body_template")), {"Hi B"})

        # Decided once: better figures for A later, or a second worker deciding, change nothing.
        sent_a.write({"state": "opened"})
        self.assertEqual(step._ab_decide(DECISION + datetime.timedelta(hours=1)), variant_b)
        self.assertEqual(step.ab_decided_at, DECISION)

    def test_a_decision_taken_by_another_worker_meanwhile_is_kept(self):
        campaign, step = self.launch_and_split()
        variant_a, _variant_b = step.variant_ids
        sent_a, sent_b = self.by_variant(campaign, step)
        (sent_a | sent_b).write({"state": "sent"})
        sent_b.write({"state": "opened"})
        self.assertFalse(step.ab_winner_id)  # read into the cache before the other worker decides
        self.env.cr.execute(
            "UPDATE gobysend_campaign_step SET ab_winner_id = %s, ab_decided_at = %s WHERE id = %s",
            [variant_a.id, DECISION, step.id],
        )
        self.assertEqual(step._ab_decide(DECISION + datetime.timedelta(minutes=5)), variant_a)
        self.assertEqual(step.ab_decided_at, DECISION)

    def test_winner_by_click_rate(self):
        campaign, step = self.launch_and_split(metric="click")
        variant_a, variant_b = step.variant_ids
        sent_a, sent_b = self.by_variant(campaign, step)
        sent_a.write({"state": "opened"})  # A is opened more, B is clicked more
        sent_b.write({"state": "sent"})
        sent_b[:1].write({"state": "clicked"})
        self.advance(DECISION)
        self.assertEqual(step.ab_winner_id, variant_b)
        self.assertAlmostEqual(variant_b.click_rate, 1 / len(sent_b))
        self.assertEqual(variant_a.click_rate, 0.0)

    def test_winner_by_conversion_to_the_campaigns_goal(self):
        campaign, step = self.launch_and_split(metric="conversion", goal_event_name="order_paid")
        variant_a, variant_b = step.variant_ids
        sent_a, sent_b = self.by_variant(campaign, step)
        sent_a.write({"state": "sent"})
        sent_b.write({"state": "opened"})  # B is opened more, A converts
        with freeze_time(MONDAY_MORNING_UTC + datetime.timedelta(hours=2)):
            self.ingest.track(self.workspace_a, {"email": sent_a[0].partner_id.email, "name": "order_paid"})
            self.ingest.track(self.workspace_a, {"email": sent_b[0].partner_id.email, "name": "page_viewed"})
        self.assertEqual((variant_a.converted_count, variant_b.converted_count), (1, 0))
        self.advance(DECISION)
        self.assertEqual(step.ab_winner_id, variant_a)
        self.assertAlmostEqual(variant_a.conversion_rate, 1 / len(sent_a))

    def test_winner_by_conversion_to_the_workflows_goal_step(self):
        campaign, step = self.ab_campaign()
        for sequence, values in enumerate(
            (
                {"kind": "wait", "timing": "delay", "delay_amount": 3, "delay_unit": "days"},
                {"kind": "goal", "goal_type": "event", "event_name": "order_paid"},
            ),
            start=10,
        ):
            self.env["gobysend.campaign.step"].create(dict(values, campaign_id=campaign.id, sequence=sequence))
        step.ab_metric = "conversion"
        self.launch(campaign)
        variant_a, variant_b = step.variant_ids
        sent_a, sent_b = self.by_variant(campaign, step)
        (sent_a | sent_b).write({"state": "delivered"})
        self.advance()
        # A's first contact pays during the wait: the journey jumps to the goal and converts.
        with freeze_time(MONDAY_MORNING_UTC + datetime.timedelta(hours=2)):
            self.ingest.track(self.workspace_a, {"email": sent_a[0].partner_id.email, "name": "order_paid"})
            self.ingest.track(self.workspace_a, {"email": sent_b[0].partner_id.email, "name": "page_viewed"})
        self.assertTrue(sent_a[0].journey_id.converted)
        self.assertFalse(sent_b.journey_id.filtered("converted"))
        self.assertEqual((variant_a.converted_count, variant_b.converted_count), (1, 0))
        self.advance(DECISION)
        self.assertEqual(step.ab_winner_id, variant_a)

    def test_the_goal_a_winner_by_conversion_counts_cannot_be_taken_away(self):
        campaign, step = self.ab_campaign(goal_event_name="order_paid")
        step.ab_metric = "conversion"
        goal = self.env["gobysend.campaign.step"].create(
            {"campaign_id": campaign.id, "sequence": 20, "kind": "goal", "goal_type": "event", "event_name": "paid"}
        )
        # Either goal is enough: one of them may go.
        campaign.goal_event_name = False
        with self.assert_refused("a winner by conversion needs a goal"):
            goal.unlink()
        self.assertTrue(goal.exists())
        campaign.goal_event_name = "order_paid"
        goal.unlink()
        with self.assert_refused("a winner by conversion needs a goal"):
            campaign.goal_event_name = False
        self.assertEqual(campaign.goal_event_name, "order_paid")
        # Another metric needs no goal.
        step.ab_metric = "open"
        campaign.goal_event_name = False

    def test_a_tie_goes_to_the_first_variant(self):
        campaign, step = self.launch_and_split()
        variant_a, variant_b = step.variant_ids
        sent_a, sent_b = self.by_variant(campaign, step)
        (sent_a | sent_b).write({"state": "delivered"})
        variant_b.sequence = 1  # B is now the first variant
        variant_a.sequence = 2
        self.advance(DECISION)
        self.assertEqual(step.ab_winner_id, variant_b)

    def launch_and_split(self, metric="open", **values):
        campaign, step = self.ab_campaign(metric=metric, **values)
        self.launch(campaign)
        sent_a, sent_b = self.by_variant(campaign, step)
        self.assertTrue(sent_a and sent_b)
        self.assertTrue(campaign.journey_ids.filtered(lambda journey: journey.state == "waiting"))
        return campaign, step

    def test_a_test_of_the_campaign_sends_every_variant(self):
        campaign, _step = self.ab_campaign()
        wizard = self.env["gobysend.campaign.test.wizard"].create(
            {"campaign_id": campaign.id, "partner_id": self.contacts[0].id}
        )
        messages = self.env["gobysend.message"].search(wizard.action_send()["domain"])
        self.assertEqual(sorted(messages.mapped("body_template")), ["Hi A", "Hi B"])
        self.assertTrue(all(messages.mapped("is_test")))

    @contextlib.contextmanager
    def assert_refused(self, pattern):
        # Odoo's assertRaises rolls the refused change back (a savepoint): the next check
        # starts from valid settings.
        with self.assertRaises(ValidationError) as caught:
            yield
        self.assertRegex(str(caught.exception), pattern)

    def test_settings_are_checked(self):
        _campaign, step = self.ab_campaign()
        with self.assert_refused("at least two variants"):
            step.variant_ids = [(2, step.variant_ids[1].id)]
        for share in (0, 100):
            with self.assert_refused("between 1 and 99"):
                step.ab_test_share = share
        with self.assert_refused("how the winner is decided"):
            step.ab_metric = False
        with self.assert_refused("needs a goal: the campaign.s goal event or a Goal step"):
            step.ab_metric = "conversion"
        with self.assert_refused("one hour or more"):
            step.ab_decision_hours = 0
        email_template = self.env["gobysend.message.template"].create(
            {"name": "Newsletter", "workspace_id": self.workspace_a.id, "channel_type": "email", "body": "<p>Hi</p>"}
        )
        with self.assert_refused("variant A: template “Newsletter” is not a template for"):
            step.variant_ids[0].write({"body": False, "template_id": email_template.id})
        with self.assert_refused("variant B: write the message or choose a template"):
            step.variant_ids[1].body = False
        with self.assert_refused("variant B: "):
            step.variant_ids[1].body = "Hi {{ contact.name "
