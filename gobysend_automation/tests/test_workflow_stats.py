import datetime

from freezegun import freeze_time

from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .. import journeys
from .common import GobysendHttpCase
from .test_campaign import MONDAY_MORNING_UTC, CampaignCase

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestWorkflowStatistics(CampaignCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.email = cls.env["gobysend.channel"].create(
            {"name": "Email", "workspace_id": cls.workspace_a.id, "channel_type": "email", "state": "enabled"}
        )

    def messages_of(self, step):
        return self.env["gobysend.message"].search([("campaign_step_id", "=", step.id)], order="id")

    def dispatched(self, messages, at=MONDAY_MORNING_UTC):
        """What the outbox's dispatch does to a message handed over to the provider."""
        messages.sudo().write({"state": "sent", "sent_at": at})

    def by_contact(self, messages):
        return {message.partner_id: message for message in messages}

    def drip(self):
        """First → wait 1 day → second → goal (order_paid) → thanks."""
        return self.launch(
            self.campaign(
                [
                    {"kind": "send", "channel_id": self.email.id, "subject": "First", "body": "<p>First</p>"},
                    {"kind": "wait", "timing": "delay", "delay_amount": 1, "delay_unit": "days"},
                    {"kind": "send", "channel_id": self.email.id, "subject": "Second", "body": "<p>Second</p>"},
                    {"kind": "goal", "goal_type": "event", "event_name": "order_paid"},
                    {"kind": "send", "channel_id": self.sms.id, "body": "Thanks"},
                ]
            )
        )

    def test_figures_per_step_and_per_campaign(self):
        campaign = self.drip()
        first, wait, second, goal, thanks = campaign.step_ids.sorted("sequence")
        self.dispatched(self.messages_of(first))
        messages = self.by_contact(self.messages_of(first))
        messages[self.contacts[0]]._apply_receipt("delivered", "d-0")
        messages[self.contacts[0]]._apply_receipt("clicked", "c-0")
        messages[self.contacts[1]]._apply_receipt("opened", "o-1")
        messages[self.contacts[2]]._apply_receipt("bounced", "b-2")
        messages[self.contacts[3]]._apply_receipt("failed", "f-3", reason="Mailbox full")
        self.ingest.track(self.workspace_a, {"email": self.contacts[0].email, "name": "order_paid"})
        self.advance(MONDAY_MORNING_UTC + HOUR)
        # The buyer left the wait for the goal: it is neither waiting there nor counted as entered.
        self.assertEqual((wait.journeys_here, wait.entered_count), (4, 4))
        self.advance(MONDAY_MORNING_UTC + DAY)
        steps = campaign.step_ids
        steps.invalidate_recordset()
        figures = {
            step: (
                step.entered_count,
                step.completed_count,
                step.journeys_here,
                step.sent_count,
                step.delivered_count,
                step.opened_count,
                step.clicked_count,
                step.bounced_count,
                step.failed_count,
                step.converted_count,
            )
            for step in steps
        }
        self.assertEqual(figures[first], (5, 5, 0, 4, 2, 2, 1, 1, 1, 1))
        # The buyer jumped to the goal from the wait: it never finished the wait nor got the second.
        self.assertEqual(figures[wait], (4, 4, 0, 0, 0, 0, 0, 0, 0, 0))
        self.assertEqual(figures[second][:3], (4, 4, 0))
        self.assertEqual(figures[goal], (5, 1, 0, 0, 0, 0, 0, 0, 0, 1))
        self.assertEqual(goal.exited_count, 4)
        self.assertEqual(figures[thanks][:2], (1, 1))
        self.assertEqual(first.conversion_rate, 0.2)
        campaign.invalidate_recordset()
        self.assertEqual((campaign.journey_count, campaign.journeys_converted), (5, 1))
        self.assertEqual(campaign.conversion_rate, 0.2)
        self.assertEqual(campaign.first_run_at, MONDAY_MORNING_UTC)
        self.assertEqual(campaign.last_run_at_stat, MONDAY_MORNING_UTC + DAY)
        self.assertEqual(campaign.step_stat_ids, steps.sorted("sequence"))
        # The editor's nodes show the same live counts, converted included.
        nodes = {
            node["id"]: node["counts"]
            for node in self.env["gobysend.campaign.step"].workflow_tree(campaign.id)["steps"]
        }
        self.assertEqual(nodes[first.id]["converted"], 1)
        self.assertEqual(nodes[goal.id]["converted"], 1)

    def test_step_figures_cost_as_many_queries_for_many_steps(self):
        campaign = self.drip()
        Journey = self.env["gobysend.journey"]

        def queries(steps):
            self.env.flush_all()
            before = self.env.cr.sql_log_count
            Journey._step_statistics(steps.ids)
            return self.env.cr.sql_log_count - before

        self.assertEqual(queries(campaign.step_ids[:1]), queries(campaign.step_ids))

    def test_test_journeys_stay_out_of_the_figures(self):
        campaign = self.drip()
        first = campaign.step_ids.sorted("sequence")[0]
        self.env["gobysend.journey"]._enter(campaign, [{"partner_id": self.contacts[0].id}], run=True, is_test=True)
        first.invalidate_recordset()
        self.assertEqual(first.entered_count, 5)

    def test_graphs_over_time_cover_journeys_conversions_and_steps(self):
        campaign = self.drip()
        self.ingest.track(self.workspace_a, {"email": self.contacts[0].email, "name": "order_paid"})
        conversions = campaign.action_view_conversions()
        self.assertEqual(conversions["views"][0][1], "graph")
        converted = self.env["gobysend.journey"].search(conversions["domain"])
        self.assertEqual(converted.partner_id, self.contacts[0])
        graph = self.env["gobysend.journey"]._read_group(conversions["domain"], ["converted_at:day"], ["__count"])
        self.assertEqual([count for _day, count in graph], [1])
        self.advance(MONDAY_MORNING_UTC + HOUR)
        steps = campaign.action_view_step_statistics()
        logs = self.env["gobysend.journey.log"]._read_group(steps["domain"], ["step_id"], ["__count"])
        self.assertEqual(sum(count for _step, count in logs), 5 + 2, "five first messages, the goal and the thanks")
        journeys = campaign.action_view_journey_statistics()
        self.assertEqual(self.env["gobysend.journey"].search_count(journeys["domain"]), 5)

    def test_contact_form_shows_each_journey_as_a_timeline(self):
        vip = self.env["res.partner.category"].create({"name": "VIP"})
        campaign = self.campaign([{"kind": "send", "channel_id": self.email.id, "subject": "Hi", "body": "<p>Hi</p>"}])
        condition = self.env["gobysend.campaign.step"].create(
            {
                "campaign_id": campaign.id,
                "sequence": 5,
                "name": "Is a VIP",
                "kind": "condition",
                "condition_kind": "tag",
                "tag_id": vip.id,
            }
        )
        self.env["gobysend.campaign.step"].create(
            {
                "campaign_id": campaign.id,
                "sequence": 6,
                "name": "Pause",
                "kind": "wait",
                "timing": "delay",
                "delay_amount": 2,
                "delay_unit": "days",
            }
        )
        self.assertTrue(condition)
        self.launch(campaign)
        contact = self.contacts[0]
        message = self.by_contact(self.messages_of(campaign.step_ids.sorted("sequence")[0]))[contact]
        self.dispatched(message)
        message._apply_receipt("opened", "o")
        journey = contact.gobysend_journey_ids
        self.assertEqual(journey.campaign_id, campaign)
        html = str(journey.timeline_html)
        for text in (
            "Send a message",
            "Email message: Opened",
            "Is a VIP",
            "Took the “No” branch",
            "Waiting at “Pause”",
        ):
            self.assertIn(text, html)
        self.assertLess(html.index("Send a message"), html.index("Is a VIP"))
        # A workspace member reads it too (sales staff open the contact form).
        self.assertIn("Email message: Opened", str(journey.with_user(self.user_a).timeline_html))
        self.advance(MONDAY_MORNING_UTC + 3 * DAY)
        journey.invalidate_recordset()
        html = str(journey.timeline_html)
        self.assertIn("Waited until", html)
        self.assertIn("Completed the workflow", html)

    def test_timeline_shows_why_a_journey_failed_or_exited(self):
        campaign = self.launch(self.campaign([{"kind": "exit", "name": "Not for you"}]))
        journey = campaign.journey_ids.filtered(lambda j: j.partner_id == self.contacts[1])
        self.assertIn("Exited: Not for you", str(journey.timeline_html))


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestFollowUps(CampaignCase):
    """Seed 002: after a link of email 1 is clicked, send an SMS while the main drip goes on; if
    email 2 is not opened within 2 days, create a call activity."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.email = cls.env["gobysend.channel"].create(
            {"name": "Email", "workspace_id": cls.workspace_a.id, "channel_type": "email", "state": "enabled"}
        )

    def journeys_of(self, campaign):
        return self.env["gobysend.journey"].search([("campaign_id", "=", campaign.id)])

    def test_follow_ups_beside_the_main_drip_work_and_show_in_its_statistics(self):
        main = self.campaign(
            [
                {"kind": "send", "channel_id": self.email.id, "subject": "Email 1", "body": "<p>1</p>"},
                {"kind": "wait", "timing": "delay", "delay_amount": 1, "delay_unit": "days"},
                {"kind": "send", "channel_id": self.email.id, "subject": "Email 2", "body": "<p>2</p>"},
                {"kind": "wait", "timing": "delay", "delay_amount": 3, "delay_unit": "days"},
                {"kind": "send", "channel_id": self.email.id, "subject": "Email 3", "body": "<p>3</p>"},
            ],
            name="Drip",
        )
        email_1, _wait, email_2, wait_2, _email_3 = main.step_ids.sorted("sequence")
        after_click = self.campaign(
            [{"kind": "send", "channel_id": self.sms.id, "body": "Saw you clicked: here is 10% off"}],
            name="Clicked email 1",
            trigger_kind="engagement",
            engagement_campaign_id=main.id,
            engagement_step_id=email_1.id,
            engagement_kind="clicked",
        )
        call = self.env.ref("mail.mail_activity_data_call")
        not_opened = self.campaign(
            [{"kind": "activity", "activity_type_id": call.id, "activity_summary": "Call: email 2 unopened"}],
            name="Email 2 not opened",
            trigger_kind="engagement",
            engagement_campaign_id=main.id,
            engagement_step_id=email_2.id,
            engagement_kind="not_opened",
            engagement_hours=48,
        )
        self.launch(main)
        after_click.action_launch()
        not_opened.action_launch()
        Message = self.env["gobysend.message"]
        first = {m.partner_id: m for m in Message.search([("campaign_step_id", "=", email_1.id)])}
        Message.browse([m.id for m in first.values()]).sudo().write({"state": "sent", "sent_at": MONDAY_MORNING_UTC})
        clicker = self.contacts[0]
        first[clicker]._apply_receipt("clicked", "click-email-1")
        # A click on email 1 opened it too, but only the click follow-up of email 1 starts.
        self.assertEqual(self.journeys_of(after_click).partner_id, clicker)
        self.advance(MONDAY_MORNING_UTC + HOUR)
        sms = Message.search([("campaign_id", "=", after_click.id)])
        self.assertEqual(sms.partner_id, clicker)
        # The main drip goes on for the clicker too.
        self.advance(MONDAY_MORNING_UTC + DAY)
        second = {m.partner_id: m for m in Message.search([("campaign_step_id", "=", email_2.id)])}
        self.assertEqual(set(second), set(self.contacts))
        Message.browse([m.id for m in second.values()]).sudo().write(
            {"state": "sent", "sent_at": MONDAY_MORNING_UTC + DAY}
        )
        opener = self.contacts[1]
        second[opener]._apply_receipt("opened", "open-email-2")
        # A click on email 2 is not a click on email 1: the SMS follow-up does not start again.
        second[self.contacts[2]]._apply_receipt("clicked", "click-email-2")
        self.assertEqual(self.journeys_of(after_click).partner_id, clicker)
        Campaign = self.env["gobysend.campaign"]
        Campaign._cron_start_unopened_journeys(now=MONDAY_MORNING_UTC + DAY + 47 * HOUR)
        self.assertFalse(self.journeys_of(not_opened))
        Campaign._cron_start_unopened_journeys(now=MONDAY_MORNING_UTC + 3 * DAY + HOUR)
        unopened = self.contacts - opener - self.contacts[2]
        self.assertEqual(self.journeys_of(not_opened).partner_id, unopened)
        self.advance(MONDAY_MORNING_UTC + 3 * DAY + 2 * HOUR)
        activities = self.env["mail.activity"].search(
            [("res_model", "=", "res.partner"), ("summary", "=", "Call: email 2 unopened")]
        )
        self.assertEqual(set(activities.mapped("res_id")), set(unopened.ids))
        self.assertEqual(set(activities.activity_type_id), {call})
        # The main campaign's statistics list its follow-ups with their figures.
        main.invalidate_recordset()
        followups = {campaign.name: campaign for campaign in main.followup_ids}
        self.assertEqual(set(followups), {"Clicked email 1", "Email 2 not opened"})
        self.assertEqual(followups["Clicked email 1"].engagement_step_id, email_1)
        self.assertEqual(
            (followups["Clicked email 1"].journey_count, followups["Clicked email 1"].message_count), (1, 1)
        )
        self.assertEqual(
            (followups["Email 2 not opened"].journey_count, followups["Email 2 not opened"].journeys_completed), (3, 3)
        )
        self.assertEqual(wait_2.journeys_here, 5, "the main drip went on beside its follow-ups")

    def test_follow_up_step_must_belong_to_the_campaign_followed(self):
        main = self.campaign(name="Main")
        other = self.campaign(name="Other")
        with self.assertRaisesRegex(ValidationError, "Message of Step"):
            self.campaign(
                name="Follow-up",
                trigger_kind="engagement",
                engagement_campaign_id=main.id,
                engagement_step_id=other.step_ids.id,
            )


@tagged("post_install", "-at_install")
class TestWorkflowStatisticsUi(GobysendHttpCase):
    """The statistics page and the contact's timelines, in the browser."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workspace_a.token_balance = 100
        cls.buyer, cls.browser = cls.env["res.partner"].create(
            [{"name": "Mai Buyer", "phone": "+84912000201"}, {"name": "Bao Browser", "phone": "+84912000202"}]
        )
        cls.env["gobysend.subscription"].create(
            [{"workspace_id": cls.workspace_a.id, "partner_id": p.id} for p in (cls.buyer, cls.browser)]
        )
        sms = cls.env["gobysend.channel"].create(
            {"name": "SMS", "workspace_id": cls.workspace_a.id, "channel_type": "sms", "state": "enabled"}
        )
        cls.campaign = cls.env["gobysend.campaign"].create(
            {"name": "Timeline stats", "workspace_id": cls.workspace_a.id}
        )
        Step = cls.env["gobysend.campaign.step"]
        for sequence, values in enumerate(
            [
                {"kind": "send", "channel_id": sms.id, "body": "Hi"},
                {"kind": "wait", "timing": "delay", "delay_amount": 1, "delay_unit": "days"},
                {"kind": "goal", "name": "Paid", "goal_type": "event", "event_name": "order_paid"},
                {"kind": "send", "channel_id": sms.id, "body": "Thanks"},
            ]
        ):
            Step.create(dict(values, campaign_id=cls.campaign.id, sequence=sequence))
        cls.env["gobysend.campaign"].create(
            {
                "name": "Clicked the offer",
                "workspace_id": cls.workspace_a.id,
                "trigger_kind": "engagement",
                "engagement_campaign_id": cls.campaign.id,
                "engagement_step_id": cls.campaign.step_ids.sorted("sequence")[0].id,
                "engagement_kind": "clicked",
            }
        )
        cls.campaign.write({"state": "running"})
        Journey = cls.env["gobysend.journey"]
        Journey._enter(cls.campaign, [{"partner_id": p.id} for p in (cls.buyer, cls.browser)], run=True)
        cls.ingest.track(cls.workspace_a, {"phone": cls.buyer.phone, "name": "order_paid"})
        # The engine's next batch for the buyer, standing at the goal step.
        batch = journeys.JourneyBatch(cls.env)
        batch.run(batch.load(cls.campaign.journey_ids.filtered(lambda j: j.partner_id == cls.buyer).ids))
        batch.save()

    def test_manager_reads_step_figures_conversions_and_follow_ups(self):
        self.start_tour(
            f"/odoo/action-gobysend_automation.gobysend_campaign_action/{self.campaign.id}",
            "gobysend_workflow_stats_tour",
            login="admin",
        )

    def test_sales_user_reads_a_contacts_journey_as_a_timeline(self):
        self.start_tour(f"/odoo/res.partner/{self.buyer.id}", "gobysend_journey_timeline_tour", login=self.user_a.login)
