import datetime

from freezegun import freeze_time

from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .test_campaign import MONDAY_MORNING_UTC, CampaignCase

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestWorkflowGoal(CampaignCase):
    def goal_campaign(self, goal, **values):
        """Hi → wait 3 days → reminder → goal → thank-you."""
        return self.campaign(
            [
                {"kind": "send", "channel_id": self.sms.id, "body": "Hi"},
                {"kind": "wait", "timing": "delay", "delay_amount": 3, "delay_unit": "days"},
                {"kind": "send", "channel_id": self.sms.id, "body": "Reminder"},
                dict(goal, kind="goal"),
                {"kind": "send", "channel_id": self.sms.id, "body": "Thank you"},
            ],
            **values,
        )

    def bodies_of(self, campaign, contact):
        messages = self.env["gobysend.message"].search(
            [("campaign_id", "=", campaign.id), ("partner_id", "=", contact.id)], order="id"
        )
        return messages.mapped("body_template")

    def journey_of(self, campaign, contact):
        return campaign.journey_ids.filtered(lambda journey: journey.partner_id == contact)

    def test_goal_event_jumps_to_the_goal_step_at_once_and_goes_on_from_there(self):
        campaign = self.launch(self.goal_campaign({"goal_type": "event", "event_name": "order_paid"}))
        buyer, other = self.contacts[0], self.contacts[1]
        self.assertEqual(self.journey_of(campaign, buyer).state, "waiting")
        self.ingest.track(self.workspace_a, {"email": buyer.email, "name": "order_paid"})
        journey = self.journey_of(campaign, buyer)
        goal = campaign.step_ids.filtered(lambda step: step.kind == "goal")
        # Converted as the event is stored, standing at the goal step, due now (not in 3 days).
        self.assertEqual((journey.step_id, journey.state, journey.converted), (goal, "active", True))
        self.assertEqual(journey.wake_at, MONDAY_MORNING_UTC)
        self.advance(MONDAY_MORNING_UTC + HOUR)
        self.assertEqual(self.bodies_of(campaign, buyer), ["Hi", "Thank you"])
        self.assertEqual((journey.state, journey.converted), ("completed", True))
        goal_log = journey.log_ids.filtered(lambda log: log.step_id == goal)
        self.assertEqual((goal_log.outcome, goal_log.reason), ("done", "Reached the goal."))
        # The others go on, and exit at the goal step they walk into without converting.
        self.advance(MONDAY_MORNING_UTC + 3 * DAY)
        self.assertEqual(self.bodies_of(campaign, other), ["Hi", "Reminder"])
        other_journey = self.journey_of(campaign, other)
        self.assertEqual((other_journey.state, other_journey.converted), ("exited", False))
        self.assertEqual(other_journey.reason, "Came to the goal step without reaching the goal.")
        self.assertEqual(campaign.journeys_converted, 1)

    def test_goal_event_with_a_property_filter(self):
        campaign = self.launch(
            self.goal_campaign({"goal_type": "event", "event_name": "order_paid", "event_filter": "total > 100"})
        )
        small, big = self.contacts[0], self.contacts[1]
        self.ingest.track(self.workspace_a, {"email": small.email, "name": "order_paid", "properties": {"total": 5}})
        self.ingest.track(self.workspace_a, {"email": big.email, "name": "order_paid", "properties": {"total": 500}})
        self.assertEqual(
            campaign.journey_ids.filtered("converted").partner_id, big, "only the event meeting the filter converts"
        )

    def test_condition_goal_checked_when_the_journey_advances(self):
        vip = self.env["res.partner.category"].create({"name": "VIP"})
        campaign = self.launch(
            self.goal_campaign({"goal_type": "condition", "condition_kind": "tag", "tag_id": vip.id})
        )
        self.contacts[2].category_id = vip
        self.advance(MONDAY_MORNING_UTC + 3 * DAY)
        self.assertEqual(self.bodies_of(campaign, self.contacts[2]), ["Hi", "Thank you"], "jumped before the reminder")
        self.assertEqual(self.bodies_of(campaign, self.contacts[3]), ["Hi", "Reminder"])
        self.assertEqual(campaign.journey_ids.filtered("converted").partner_id, self.contacts[2])
        self.assertEqual(campaign.journeys_converted, 1)

    def test_condition_goal_becoming_true_while_a_journey_waits_is_found_within_the_minute(self):
        vip = self.env["res.partner.category"].create({"name": "VIP"})
        campaign = self.launch(
            self.goal_campaign({"goal_type": "condition", "condition_kind": "tag", "tag_id": vip.id})
        )
        Journey = self.env["gobysend.journey"]
        Journey._cron_advance()
        self.assertFalse(campaign.journey_ids.filtered("converted"))
        self.contacts[2].category_id = vip
        Journey._cron_advance()
        journey = self.journey_of(campaign, self.contacts[2])
        self.assertEqual((journey.step_id.kind, journey.state, journey.converted), ("goal", "active", True))
        self.advance(MONDAY_MORNING_UTC + HOUR)
        self.assertEqual(self.bodies_of(campaign, self.contacts[2]), ["Hi", "Thank you"], "not three days later")
        self.assertEqual(set((campaign.journey_ids - journey).mapped("state")), {"waiting"})

    def test_condition_goal_on_an_attribute_or_contact_fields_as_the_condition_step_checks_them(self):
        tier = self.env["gobysend.attribute"].create(
            {"workspace_id": self.workspace_a.id, "key": "tier", "value_type": "string"}
        )
        by_attribute = self.launch(
            self.goal_campaign(
                {
                    "goal_type": "condition",
                    "condition_kind": "attribute",
                    "attribute_id": tier.id,
                    "attribute_operator": "eq",
                    "attribute_value": "gold",
                }
            )
        )
        by_fields = self.launch(
            self.goal_campaign(
                {
                    "goal_type": "condition",
                    "condition_kind": "contact",
                    "partner_domain": "[('function', '=', 'Buyer')]",
                },
                name="By fields",
            )
        )
        self.ingest.identify(self.workspace_a, {"email": self.contacts[1].email, "attributes": {"tier": "gold"}})
        self.contacts[4].function = "Buyer"
        self.advance(MONDAY_MORNING_UTC + 3 * DAY)
        self.assertEqual(by_attribute.journey_ids.filtered("converted").partner_id, self.contacts[1])
        self.assertEqual(by_fields.journey_ids.filtered("converted").partner_id, self.contacts[4])
        self.assertEqual(self.bodies_of(by_fields, self.contacts[4]), ["Hi", "Thank you"])

    def test_campaign_goal_event_ends_waiting_journeys_when_the_event_arrives(self):
        campaign = self.launch(
            self.campaign(
                [
                    {"kind": "wait", "timing": "delay", "delay_amount": 7, "delay_unit": "days"},
                    {"kind": "send", "channel_id": self.sms.id, "body": "Later"},
                ],
                goal_event_name="order_paid",
            )
        )
        buyer = self.contacts[0]
        self.ingest.track(self.workspace_a, {"email": buyer.email, "name": "order_paid"})
        journey = self.journey_of(campaign, buyer)
        self.assertEqual((journey.state, journey.converted), ("exited", True), "not 7 days later")
        self.assertEqual(journey.converted_at, MONDAY_MORNING_UTC)
        self.assertEqual(campaign.journeys_converted, 1)

    def test_an_event_before_the_journey_started_does_not_convert(self):
        buyer = self.contacts[0]
        self.ingest.track(
            self.workspace_a,
            {"email": buyer.email, "name": "order_paid", "timestamp": (MONDAY_MORNING_UTC - DAY).isoformat()},
        )
        campaign = self.launch(self.goal_campaign({"goal_type": "event", "event_name": "order_paid"}))
        self.ingest.track(
            self.workspace_a,
            {"email": buyer.email, "name": "order_paid", "timestamp": (MONDAY_MORNING_UTC - HOUR).isoformat()},
        )
        self.advance(MONDAY_MORNING_UTC + HOUR)
        self.assertFalse(campaign.journey_ids.filtered("converted"))

    def test_converting_many_journeys_from_the_ingest_costs_as_many_queries_as_a_few(self):
        Partner = self.env["res.partner"]
        crowd = Partner.create([{"name": f"Buyer {n}", "email": f"buyer{n}@example.com"} for n in range(45)])
        self.env["gobysend.subscription"].create(
            [{"workspace_id": self.workspace_a.id, "partner_id": partner.id} for partner in crowd]
        )
        campaign = self.launch(self.goal_campaign({"goal_type": "event", "event_name": "order_paid"}))
        self.launch(self.campaign([{"kind": "wait", "timing": "delay"}], name="Leave", goal_event_name="order_paid"))

        def queries(buyers):
            items = [{"type": "track", "email": buyer.email, "name": "order_paid"} for buyer in buyers]
            self.env.flush_all()
            before = self.env.cr.sql_log_count
            self.ingest.batch(self.workspace_a, items)
            self.env.flush_all()
            return self.env.cr.sql_log_count - before

        queries(crowd[:5])
        few, many = queries(crowd[5:15]), queries(crowd[15:45])
        self.assertEqual(few, many)
        converted = campaign.journey_ids.filtered("converted")
        self.assertEqual(converted.partner_id, crowd)
        self.assertEqual(set(converted.step_id.mapped("kind")), {"goal"})
        leave = self.env["gobysend.campaign"].search([("name", "=", "Leave")])
        self.assertEqual(leave.journey_ids.filtered("converted").partner_id, crowd)

    def test_goal_steps_are_checked(self):
        with self.assertRaisesRegex(ValidationError, "name the event"):
            self.goal_campaign({"goal_type": "event"})
        with self.assertRaisesRegex(ValidationError, "not engagement"):
            self.goal_campaign({"goal_type": "condition", "condition_kind": "engagement"})
        with self.assertRaisesRegex(ValidationError, "more than one goal"):
            self.campaign(
                [
                    {"kind": "goal", "goal_type": "event", "event_name": "a"},
                    {"kind": "goal", "goal_type": "event", "event_name": "b"},
                ]
            )

    def test_the_goal_step_is_offered_by_the_editor_with_a_readable_summary(self):
        Step = self.env["gobysend.campaign.step"]
        self.assertIn("goal", [kind["key"] for kind in Step.workflow_step_kinds()])
        campaign = self.goal_campaign({"goal_type": "event", "event_name": "order_paid", "event_filter": "total > 5"})
        tree = Step.workflow_tree(campaign.id)
        goal = next(node for node in tree["steps"] if node["kind"] == "goal")
        self.assertEqual((goal["kind_label"], goal["summary"]), ("Goal", "order_paid total > 5"))
