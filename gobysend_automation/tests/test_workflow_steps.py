import datetime

from freezegun import freeze_time

from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .test_campaign import MONDAY_MORNING_UTC, CampaignCase


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestWorkflowSteps(CampaignCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tier = cls.env["gobysend.attribute"].create(
            {"workspace_id": cls.workspace_a.id, "key": "tier", "value_type": "string"}
        )
        cls.ingest.identify(cls.workspace_a, {"email": cls.contacts[0].email, "attributes": {"tier": "gold"}})

    def branching(self, condition, yes_body="Gold", no_body="Others"):
        campaign = self.campaign([condition])
        root = campaign.step_ids
        Step = self.env["gobysend.campaign.step"]
        for branch, body in (("yes", yes_body), ("no", no_body)):
            Step.create(
                {
                    "campaign_id": campaign.id,
                    "parent_id": root.id,
                    "branch": branch,
                    "kind": "send",
                    "channel_id": self.sms.id,
                    "body": body,
                }
            )
        return campaign

    def bodies(self, campaign):
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        return {message.partner_id: message.body_template for message in messages}

    def test_condition_on_an_attribute_branches_yes_and_no(self):
        campaign = self.launch(
            self.branching(
                {
                    "kind": "condition",
                    "condition_kind": "attribute",
                    "attribute_id": self.tier.id,
                    "attribute_operator": "eq",
                    "attribute_value": "gold",
                }
            )
        )
        bodies = self.bodies(campaign)
        self.assertEqual(bodies[self.contacts[0]], "Gold")
        self.assertEqual({bodies[contact] for contact in self.contacts[1:]}, {"Others"})
        logs = campaign.journey_ids.log_ids.filtered(lambda log: log.step_id.kind == "condition")
        self.assertEqual(sorted(logs.mapped("branch")), ["no"] * 4 + ["yes"])

    def test_condition_on_a_tag_and_on_contact_fields(self):
        tag = self.env["res.partner.category"].create({"name": "VIP"})
        self.contacts[1].category_id = tag
        campaign = self.launch(self.branching({"kind": "condition", "condition_kind": "tag", "tag_id": tag.id}))
        self.assertEqual(self.bodies(campaign)[self.contacts[1]], "Gold")
        campaign = self.launch(
            self.branching(
                {
                    "kind": "condition",
                    "condition_kind": "contact",
                    "partner_domain": f"[('email', '=', '{self.contacts[2].email}')]",
                }
            )
        )
        self.assertEqual([p for p, body in self.bodies(campaign).items() if body == "Gold"], [self.contacts[2]])

    def test_a_branch_must_be_one_of_the_parent_branches(self):
        campaign = self.campaign(
            [
                {
                    "kind": "condition",
                    "condition_kind": "tag",
                    "tag_id": self.env["res.partner.category"].create({"name": "T"}).id,
                }
            ]
        )
        with self.assertRaisesRegex(ValidationError, "yes, no"):
            self.env["gobysend.campaign.step"].create(
                {"campaign_id": campaign.id, "parent_id": campaign.step_ids.id, "branch": "maybe", "kind": "exit"}
            )

    def test_condition_on_engagement_with_an_earlier_message(self):
        campaign = self.campaign([{"kind": "send", "channel_id": self.sms.id, "body": "First"}])
        first = campaign.step_ids
        wait = self.env["gobysend.campaign.step"].create(
            {
                "campaign_id": campaign.id,
                "sequence": 5,
                "kind": "wait",
                "timing": "delay",
                "delay_amount": 1,
                "delay_unit": "hours",
            }
        )
        condition = self.env["gobysend.campaign.step"].create(
            {
                "campaign_id": campaign.id,
                "sequence": 6,
                "kind": "condition",
                "condition_kind": "engagement",
                "engagement": "clicked",
                "engagement_step_id": first.id,
            }
        )
        self.env["gobysend.campaign.step"].create(
            {
                "campaign_id": campaign.id,
                "parent_id": condition.id,
                "branch": "yes",
                "kind": "send",
                "channel_id": self.sms.id,
                "body": "Thanks for clicking",
            }
        )
        self.launch(campaign)
        first_messages = self.env["gobysend.message"].search([("campaign_step_id", "=", first.id)])
        clicker = first_messages.filtered(lambda m: m.partner_id == self.contacts[3])
        clicker.sudo().write({"state": "clicked"})
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(hours=2))
        thanked = self.env["gobysend.message"].search([("body_template", "=", "Thanks for clicking")])
        self.assertEqual(thanked.partner_id, self.contacts[3])
        self.assertTrue(wait.done_count)

    def test_condition_on_a_given_link_clicked(self):
        campaign = self.campaign(
            [{"kind": "send", "channel_id": self.sms.id, "body": "Sale: https://shop.example.com"}]
        )
        first = campaign.step_ids
        Step = self.env["gobysend.campaign.step"]
        Step.create(
            {
                "campaign_id": campaign.id,
                "sequence": 5,
                "kind": "wait",
                "timing": "delay",
                "delay_amount": 1,
                "delay_unit": "hours",
            }
        )
        values = {
            "campaign_id": campaign.id,
            "sequence": 6,
            "kind": "condition",
            "condition_kind": "engagement",
            "engagement": "clicked_link",
            "engagement_step_id": first.id,
        }
        with self.assertRaisesRegex(ValidationError, "part of the link's address"), self.env.cr.savepoint():
            Step.create(values)
        condition = Step.create(dict(values, engagement_link="/summer-sale"))
        self.assertIn("/summer-sale", condition.summary)
        Step.create(
            {
                "campaign_id": campaign.id,
                "parent_id": condition.id,
                "branch": "yes",
                "kind": "send",
                "channel_id": self.sms.id,
                "body": "Enjoy the summer",
            }
        )
        self.launch(campaign)
        messages = self.env["gobysend.message"].search([("campaign_step_id", "=", first.id)])
        by_contact = {message.partner_id: message.sudo() for message in messages}
        by_contact[self.contacts[3]]._apply_receipt("clicked", "c3", url="https://shop.example.com/summer-sale?utm=sms")
        by_contact[self.contacts[4]]._apply_receipt("clicked", "c4", url="https://shop.example.com/winter")
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(hours=2))
        summer = self.env["gobysend.message"].search([("body_template", "=", "Enjoy the summer")])
        self.assertEqual(summer.partner_id, self.contacts[3], "only the contact who clicked that link")

    def test_a_contact_out_of_the_audience_leaves_before_its_next_step(self):
        tag = self.env["res.partner.category"].create({"name": "Spring VIP"})
        self.contacts[:3].category_id = tag
        steps = [
            {"kind": "send", "channel_id": self.sms.id, "body": "One"},
            {"kind": "wait", "timing": "delay", "delay_amount": 1, "delay_unit": "hours"},
            {"kind": "send", "channel_id": self.sms.id, "body": "Two"},
        ]
        strict = self.launch(self.campaign(steps, name="Strict", tag_ids=[(6, 0, tag.ids)], leave_off_audience=True))
        loose = self.launch(self.campaign(steps, name="Loose", tag_ids=[(6, 0, tag.ids)]))
        self.advance(MONDAY_MORNING_UTC)
        self.contacts[0].category_id = [(3, tag.id)]
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(hours=2))

        def second_messages(campaign):
            return self.env["gobysend.message"].search(
                [("campaign_id", "=", campaign.id), ("body_template", "=", "Two")]
            )

        self.assertEqual(second_messages(strict).partner_id, self.contacts[1:3])
        left = strict.journey_ids.filtered(lambda journey: journey.partner_id == self.contacts[0])
        self.assertEqual((left.state, left.reason), ("exited", "No longer in the campaign's audience."))
        self.assertEqual(second_messages(loose).partner_id, self.contacts[:3], "unchecked: the journey goes on")

    def test_random_split_follows_the_shares_and_is_stable(self):
        partners = self.env["res.partner"].create([{"name": f"P{n}", "email": f"p{n}@example.com"} for n in range(200)])
        self.env["gobysend.subscription"].create(
            [{"workspace_id": self.workspace_a.id, "partner_id": partner.id} for partner in partners]
        )
        campaign = self.campaign([{"kind": "split", "split_shares": "20,80"}])
        split = campaign.step_ids
        for branch in ("A", "B"):
            self.env["gobysend.campaign.step"].create(
                {
                    "campaign_id": campaign.id,
                    "parent_id": split.id,
                    "branch": branch,
                    "kind": "send",
                    "channel_id": self.sms.id,
                    "body": branch,
                }
            )
        self.launch(campaign)
        counts = {"A": 0, "B": 0}
        for body in self.bodies(campaign).values():
            counts[body] += 1
        self.assertEqual(sum(counts.values()), 205)
        self.assertTrue(20 <= counts["A"] <= 65, counts)
        with self.assertRaisesRegex(ValidationError, "adding up to 100"):
            split.split_shares = "50,40"

    def test_wait_for_an_event_happened_or_timed_out(self):
        campaign = self.campaign(
            [
                {
                    "kind": "wait_event",
                    "event_name": "order_paid",
                    "event_filter": "total > 100",
                    "delay_amount": 1,
                    "delay_unit": "days",
                }
            ]
        )
        waiter = campaign.step_ids
        for branch in ("happened", "timed_out"):
            self.env["gobysend.campaign.step"].create(
                {
                    "campaign_id": campaign.id,
                    "parent_id": waiter.id,
                    "branch": branch,
                    "kind": "send",
                    "channel_id": self.sms.id,
                    "body": branch,
                }
            )
        self.launch(campaign)
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"waiting"})
        with freeze_time(MONDAY_MORNING_UTC + datetime.timedelta(hours=1)):
            self.ingest.track(
                self.workspace_a, {"email": self.contacts[0].email, "name": "order_paid", "properties": {"total": 500}}
            )
            self.ingest.track(
                self.workspace_a, {"email": self.contacts[1].email, "name": "order_paid", "properties": {"total": 50}}
            )
        # The ingest woke the two contacts' journeys: they go on at once, not at the time-out.
        woken = campaign.journey_ids.filtered(lambda j: j.wake_at < MONDAY_MORNING_UTC + datetime.timedelta(days=1))
        self.assertEqual(woken.partner_id, self.contacts[:2])
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(hours=1))
        self.assertEqual(self.bodies(campaign), {self.contacts[0]: "happened"})
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(days=1, minutes=1))
        bodies = self.bodies(campaign)
        self.assertEqual({bodies[contact] for contact in self.contacts[1:]}, {"timed_out"})

    def test_actions_tag_attribute_activity(self):
        tag = self.env["res.partner.category"].create({"name": "Engaged"})
        todo = self.env.ref("mail.mail_activity_data_todo")
        salesperson = self.manager_a
        self.contacts[0].user_id = salesperson
        campaign = self.launch(
            self.campaign(
                [
                    {"kind": "tag", "tag_action": "add", "tag_id": tag.id},
                    {"kind": "set_attribute", "attribute_id": self.tier.id, "attribute_value": "silver"},
                    {"kind": "activity", "activity_type_id": todo.id, "activity_summary": "Call them"},
                ]
            )
        )
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"completed"})
        self.assertEqual(tag.partner_ids, self.contacts)
        values = self.env["gobysend.attribute.value"].search([("attribute_id", "=", self.tier.id)])
        self.assertEqual(set(values.mapped("value_string")), {"silver"})
        self.assertEqual(len(values), 5)
        activities = self.env["mail.activity"].search([("summary", "=", "Call them")])
        self.assertEqual(len(activities), 5)
        self.assertEqual(activities.filtered(lambda a: a.res_id == self.contacts[0].id).user_id, salesperson)

    def test_set_attribute_refuses_a_value_of_the_wrong_type(self):
        age = self.env["gobysend.attribute"].create(
            {"workspace_id": self.workspace_a.id, "key": "age", "value_type": "number"}
        )
        with self.assertRaisesRegex(ValidationError, "not a number value"):
            self.campaign([{"kind": "set_attribute", "attribute_id": age.id, "attribute_value": "old"}])
