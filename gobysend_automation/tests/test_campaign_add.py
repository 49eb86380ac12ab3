"""Sales staff add contacts and CRM leads to campaigns; the journeys show on contacts and leads;
the campaign's statistics views."""

import json

from freezegun import freeze_time

from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged
from odoo.tools.safe_eval import safe_eval

from .test_campaign import MONDAY_MORNING_UTC, CampaignCase


class CampaignAddCase(CampaignCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sales_a = new_test_user(
            cls.env,
            login="gbs_sales_a",
            email="sales.a@example.com",
            groups="base.group_user,sales_team.group_sale_salesman,gobysend_automation.group_gobysend_user",
        )
        cls.other_sales = new_test_user(
            cls.env, login="gbs_sales_other", groups="base.group_user,sales_team.group_sale_salesman"
        )
        cls.workspace_a.member_ids = [(4, cls.sales_a.id)]
        cls.newcomer = cls.env["res.partner"].create({"name": "Newcomer", "email": "new@example.com"})

    def running_campaign(self, **values):
        campaign = self.campaign(**values)
        # Launched earlier over an audience that has since run its course; still taking contacts.
        campaign.write({"state": "running"})
        return campaign

    def add(self, campaign, model, records, user=None):
        """Run the wizard as ``user`` (the sales user) from ``records`` of ``model``."""
        user = user or self.sales_a
        Wizard = self.env["gobysend.campaign.add.wizard"].with_user(user)
        context = {"active_model": model, "active_ids": records.ids if hasattr(records, "ids") else records}
        wizard = Wizard.with_context(**context).create({"campaign_id": campaign.id})
        wizard.action_add()
        self.env.invalidate_all()
        return wizard


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestAddContacts(CampaignAddCase):
    def test_sales_user_adds_contacts_and_they_run_the_workflow(self):
        campaign = self.running_campaign()
        chosen = self.contacts[0] | self.newcomer
        wizard = self.add(campaign, "res.partner", chosen)
        self.assertEqual((wizard.added_count, wizard.already_count, wizard.skipped_count), (2, 0, 0))
        self.assertEqual(wizard.subscribed_count, 1)
        journeys = campaign.journey_ids
        self.assertEqual(journeys.partner_id, chosen)
        self.assertEqual(set(journeys.mapped("state")), {"active"})
        self.assertEqual(journeys.create_uid, self.sales_a, "the journeys say who added the contacts")
        subscription = self.subscription_of(self.workspace_a, self.newcomer)
        self.assertEqual((subscription.source, subscription.sms_state), ("manual", "subscribed"))
        # Once the request commits, a job of the engine takes them on (run as OdooBot, as the
        # engine's scheduled action: the sales user has no rights on the engine's work).
        self.commit_request()
        job = self.env["queue.job"].search([("method_name", "=", "_job_advance")], limit=1)
        self.assertEqual(job.user_id, self.env.ref("base.user_root"))
        Journey = self.env["gobysend.journey"].with_user(self.sales_a)
        self.env.flush_all()
        Journey._advance_claimed(Journey._claim_due(100))
        self.env.invalidate_all()
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        self.assertEqual(messages.partner_id, chosen)
        self.assertEqual(set(journeys.mapped("state")), {"completed"})

    def test_contacts_already_in_are_not_added_twice(self):
        campaign = self.running_campaign(
            steps=[{"kind": "wait", "timing": "delay", "delay_amount": 1, "delay_unit": "days"}]
        )
        self.add(campaign, "res.partner", self.contacts[0])
        wizard = self.add(campaign, "res.partner", self.contacts[:2])
        self.assertEqual((wizard.added_count, wizard.already_count, wizard.skipped_count), (1, 1, 0))
        self.assertIn("Contact 0", wizard.result)
        self.assertEqual(len(campaign.journey_ids), 2)
        # Every time: still not twice while the first journey is under way.
        campaign.sudo().reentry = "every_time"
        wizard = self.add(campaign, "res.partner", self.contacts[0])
        self.assertEqual((wizard.added_count, wizard.already_count), (0, 1))
        self.assertEqual(len(campaign.journey_ids), 2)

    def test_once_per_contact_refuses_a_contact_that_ran_it(self):
        campaign = self.running_campaign()
        self.add(campaign, "res.partner", self.contacts[0])
        self.env["gobysend.journey"]._exit_campaigns(campaign.ids, "done")
        wizard = self.add(campaign, "res.partner", self.contacts[0])
        self.assertEqual((wizard.added_count, wizard.already_count), (0, 1))
        self.assertIn("re-entry policy", wizard.result)

    def test_only_running_manual_campaigns_of_the_users_workspaces(self):
        sms_b = self.env["gobysend.channel"].create(
            {"name": "B SMS", "workspace_id": self.workspace_b.id, "channel_type": "sms", "state": "enabled"}
        )
        other_workspace = self.running_campaign(
            workspace_id=self.workspace_b.id, steps=[{"kind": "send", "channel_id": sms_b.id, "body": "x"}]
        )
        draft = self.campaign()
        bulk = self.campaign(trigger_kind="bulk", steps=[{"kind": "exit"}])
        bulk.write({"state": "running"})
        for campaign in (other_workspace, draft, bulk):
            with self.assertRaisesRegex(UserError, "running campaign with manual enrolment of one of your workspaces"):
                self.add(campaign, "res.partner", self.contacts[0])
            self.assertFalse(campaign.sudo().journey_ids)
        # Nor are they offered.
        Wizard = self.env["gobysend.campaign.add.wizard"].with_user(self.sales_a)
        domain = safe_eval(Wizard._fields["campaign_id"].domain, {"uid": self.sales_a.id})
        running = self.running_campaign(name="Offered")
        offered = self.env["gobysend.campaign"].with_user(self.sales_a).search(domain)
        self.assertEqual(offered, running)

    def test_sales_staff_keep_read_only_access_to_campaigns(self):
        campaign = self.running_campaign()
        self.add(campaign, "res.partner", self.contacts[0])
        with self.assertRaises(AccessError):
            campaign.with_user(self.sales_a).write({"name": "Mine now"})
        with self.assertRaises(AccessError):
            self.env["gobysend.journey"].with_user(self.sales_a).browse(campaign.journey_ids.ids).write(
                {"state": "exited"}
            )

    def test_records_the_user_cannot_see_are_refused(self):
        campaign = self.running_campaign()
        other_company = self.env["res.company"].create({"name": "Other Co"})
        hidden = self.env["res.partner"].create({"name": "Hidden", "company_id": other_company.id})
        with self.assertRaises(AccessError):
            self.add(campaign, "res.partner", self.contacts[0] | hidden)
        self.assertFalse(campaign.journey_ids)
        self.assertFalse(self.subscription_of(self.workspace_a, hidden))

    def test_odoo_users_and_archived_contacts_are_skipped_with_a_reason(self):
        campaign = self.running_campaign()
        self.subscription_of(self.workspace_a, self.contacts[1]).active = False
        wizard = self.add(campaign, "res.partner", self.other_sales.partner_id | self.contacts[1] | self.contacts[2])
        self.assertEqual((wizard.added_count, wizard.skipped_count), (1, 2))
        self.assertIn("an Odoo user or company", wizard.result)
        self.assertIn("archived in workspace Shop A", wizard.result)
        self.assertEqual(campaign.journey_ids.partner_id, self.contacts[2])
        self.assertFalse(self.subscription_of(self.workspace_a, self.other_sales.partner_id))

    def test_double_opt_in_workspace_keeps_new_contacts_pending(self):
        self.workspace_a.sudo().double_opt_in = True
        campaign = self.running_campaign()
        self.add(campaign, "res.partner", self.newcomer)
        subscription = self.subscription_of(self.workspace_a, self.newcomer)
        self.assertEqual(subscription.sms_state, "pending")
        self.assertEqual(campaign.journey_ids.partner_id, self.newcomer)


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestAddLeads(CampaignAddCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        Lead = cls.env["crm.lead"]
        cls.lead_with_contact = Lead.create(
            {"name": "Big deal", "partner_id": cls.contacts[3].id, "user_id": cls.sales_a.id}
        )
        cls.lead_new_email = Lead.create(
            {
                "name": "Website enquiry",
                "contact_name": "Mai Tran",
                "email_from": "Mai <mai@example.com>",
                "user_id": cls.sales_a.id,
            }
        )

    def test_lead_with_a_contact_enters_with_the_lead_as_its_record(self):
        campaign = self.running_campaign()
        wizard = self.add(campaign, "crm.lead", self.lead_with_contact)
        self.assertEqual(wizard.added_count, 1)
        journey = campaign.journey_ids
        self.assertEqual(
            (journey.partner_id, journey.res_model, journey.res_id),
            (self.contacts[3], "crm.lead", self.lead_with_contact.id),
        )
        self.assertEqual(journey.trigger_context["record"]["name"], "Big deal")

    def test_lead_without_contact_gets_the_workspace_contact_of_its_email(self):
        campaign = self.running_campaign()
        wizard = self.add(campaign, "crm.lead", self.lead_new_email)
        self.assertEqual((wizard.added_count, wizard.subscribed_count), (1, 1))
        partner = campaign.journey_ids.partner_id
        self.assertEqual((partner.name, partner.email), ("Mai Tran", "mai@example.com"))
        self.assertEqual(partner.sudo().gobysend_origin_workspace_id, self.workspace_a)
        self.assertFalse(self.lead_new_email.partner_id, "the lead itself is left as it is")
        # A second lead with the same address finds that contact.
        again = self.env["crm.lead"].create(
            {"name": "Second enquiry", "email_from": "MAI@example.com", "user_id": False}
        )
        campaign.sudo().reentry = "every_time"
        self.env["gobysend.journey"]._exit_campaigns(campaign.ids, "done")
        self.add(campaign, "crm.lead", again)
        self.assertEqual(campaign.journey_ids.partner_id, partner)
        self.assertEqual(len(campaign.journey_ids), 2)

    def test_lead_email_of_an_existing_workspace_contact(self):
        campaign = self.running_campaign()
        lead = self.env["crm.lead"].create(
            {"name": "Returning", "email_from": "c4@example.com", "user_id": self.sales_a.id}
        )
        wizard = self.add(campaign, "crm.lead", lead)
        self.assertEqual((wizard.added_count, wizard.subscribed_count), (1, 0))
        self.assertEqual(campaign.journey_ids.partner_id, self.contacts[4])

    def test_lead_email_of_a_user_never_attaches_to_the_users_contact(self):
        campaign = self.running_campaign()
        lead = self.env["crm.lead"].create(
            {"name": "Colleague", "email_from": self.sales_a.email, "user_id": self.sales_a.id}
        )
        self.add(campaign, "crm.lead", lead)
        partner = campaign.journey_ids.partner_id
        self.assertTrue(partner)
        self.assertNotEqual(partner, self.sales_a.partner_id)
        self.assertFalse(self.subscription_of(self.workspace_a, self.sales_a.partner_id))

    def test_lead_without_contact_nor_email_is_skipped(self):
        campaign = self.running_campaign()
        lead = self.env["crm.lead"].create(
            {"name": "Phone only", "phone": "+84 912 000 001", "user_id": self.sales_a.id}
        )
        wizard = self.add(campaign, "crm.lead", lead | self.lead_with_contact)
        self.assertEqual((wizard.added_count, wizard.skipped_count), (1, 1))
        self.assertIn("Phone only (the lead has no contact and no valid email address)", wizard.result)

    def test_lead_of_another_salesman_is_refused(self):
        campaign = self.running_campaign()
        theirs = self.env["crm.lead"].create(
            {"name": "Not yours", "partner_id": self.contacts[2].id, "user_id": self.other_sales.id}
        )
        with self.assertRaises(AccessError):
            self.add(campaign, "crm.lead", theirs | self.lead_with_contact)
        self.assertFalse(campaign.journey_ids)

    def test_journeys_show_on_the_lead_and_its_contact(self):
        campaign = self.running_campaign()
        self.add(campaign, "crm.lead", self.lead_with_contact | self.lead_new_email)
        other = self.running_campaign(name="Other")
        self.add(other, "res.partner", self.contacts[3])
        lead = self.lead_with_contact.with_user(self.sales_a)
        self.assertEqual(
            lead.gobysend_journey_ids,
            (campaign | other).journey_ids.filtered(lambda journey: journey.partner_id == self.contacts[3]),
        )
        self.assertEqual(lead.gobysend_journey_count, 2)
        new_lead = self.lead_new_email.with_user(self.sales_a)
        self.assertEqual(new_lead.gobysend_journey_ids.res_id, self.lead_new_email.id)
        partner = self.contacts[3].with_user(self.sales_a)
        self.assertEqual(partner.gobysend_journey_count, 2)
        self.assertEqual(len(partner.gobysend_journey_ids), 2)
        action = lead.action_gobysend_view_journeys()
        self.assertEqual(self.env["gobysend.journey"].search(action["domain"]), lead.gobysend_journey_ids)
        for model in ("res.partner", "crm.lead"):
            arch = self.env[model].with_user(self.sales_a).get_views([(False, "form")])["views"]["form"]["arch"]
            self.assertIn('name="action_gobysend_view_journeys"', arch, model)
            self.assertIn('name="gobysend_journey_ids"', arch, model)
        # Another workspace's member sees none of them.
        self.assertEqual(self.contacts[3].with_user(self.user_b).gobysend_journey_count, 0)

    def test_wizard_opens_from_the_lead_form_with_the_lead(self):
        action = self.env.ref("gobysend_automation.gobysend_campaign_add_wizard_action_lead")
        self.assertEqual(action.binding_model_id.model, "crm.lead")
        wizard = (
            self.env["gobysend.campaign.add.wizard"]
            .with_user(self.sales_a)
            .with_context(active_model="crm.lead", active_id=self.lead_with_contact.id)
            .create({})
        )
        self.assertEqual((wizard.res_model, json.loads(wizard.res_ids)), ("crm.lead", [self.lead_with_contact.id]))
        self.assertEqual(wizard.record_count, 1)


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestCampaignStatisticsViews(CampaignCase):
    def test_kanban_shows_every_state(self):
        self.campaign()
        groups = self.env["gobysend.campaign"].read_group([], ["state"], ["state"])
        self.assertEqual(
            [group["state"] for group in groups],
            [state for state, _label in self.env["gobysend.campaign"]._fields["state"].selection],
        )

    def test_rates_on_the_campaign_and_its_steps(self):
        campaign = self.launch(self.campaign())
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        messages[0].state = "clicked"
        messages[1].state = "opened"
        messages[2].state = "bounced"
        messages[3:].write({"state": "sent"})
        campaign.invalidate_recordset()
        # 4 reached (5 sent less 1 bounced): 2 opened, 1 clicked.
        self.assertEqual((campaign.open_rate, campaign.click_rate), (0.5, 0.25))
        step = campaign.step_ids
        self.assertEqual((step.open_rate, step.click_rate), (0.4, 0.2))
        # Shown on the statistics page and in the workflow's step list.
        form = self.env["gobysend.campaign"].get_views([(False, "form")])["views"]["form"]["arch"]
        self.assertRegex(form, r'<field name="open_rate"[^>]*widget="percentage"')
        steps = self.env["gobysend.campaign.step"].get_views([(False, "list")])["views"]["list"]["arch"]
        for name in ("sent_count", "opened_count", "clicked_count", "open_rate", "click_rate"):
            self.assertIn(f'name="{name}"', steps)

    def test_recipients_filter_by_channel_and_state_and_group_by_step(self):
        campaign = self.launch(self.campaign())
        action = campaign.action_view_messages()
        self.assertEqual([view_type for _id, view_type in action["views"]], ["list", "graph", "pivot", "form"])
        views = self.env["gobysend.message"].get_views([(False, "search"), (False, "graph"), (False, "pivot")])
        search = views["views"]["search"]["arch"]
        for name in ("channel_sms", "channel_email", "opened", "clicked", "group_step", "group_channel_type"):
            self.assertIn(f'name="{name}"', search)
        self.assertIn('name="sent_at" interval="day"', views["views"]["graph"]["arch"])
        self.assertIn('name="channel_type" type="col"', views["views"]["pivot"]["arch"])
        Message = self.env["gobysend.message"]
        self.assertEqual(Message.search_count(action["domain"] + [("channel_type", "=", "sms")]), 5)
        self.assertEqual(Message.search_count(action["domain"] + [("channel_type", "=", "email")]), 0)
        statistics = campaign.action_view_statistics()
        self.assertEqual(statistics["views"][0][1], "graph")

    def test_contact_filters_use_the_domain_editor(self):
        for model, view in (
            ("gobysend.segment.condition", "list"),
            ("gobysend.segment.condition", "form"),
            ("gobysend.campaign", "form"),
        ):
            arch = self.env[model].get_views([(False, view)])["views"][view]["arch"]
            self.assertRegex(arch, r'<field name="partner_domain"[^>]*widget="domain"', f"{model} {view}")
