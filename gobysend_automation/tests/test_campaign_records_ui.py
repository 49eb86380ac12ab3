"""A record-triggered campaign set up in a browser (tour gobysend_record_campaign_tour)."""

from odoo.tests import tagged

from ..kinds.triggers import record_entries
from .common import GobysendHttpCase


@tagged("post_install", "-at_install")
class TestRecordCampaignUi(GobysendHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workspace_leads = cls.env["gobysend.workspace"].create({"name": "Shop Leads"})
        cls.env["gobysend.channel"].create(
            {"name": "Leads SMS", "workspace_id": cls.workspace_leads.id, "channel_type": "sms", "state": "enabled"}
        )
        cls.customer = cls.env["res.partner"].create({"name": "Lan Lead", "phone": "+84 912 000 043"})
        cls.env["gobysend.subscription"].create({"workspace_id": cls.workspace_leads.id, "partner_id": cls.customer.id})
        cls.stage_new = cls.env["crm.stage"].create({"name": "Tour new", "sequence": 1})
        cls.stage_won = cls.env["crm.stage"].create({"name": "Tour won", "sequence": 2, "is_won": True})
        cls.lead = cls.env["crm.lead"].create(
            {"name": "Shop fit-out", "partner_id": cls.customer.id, "stage_id": cls.stage_new.id}
        )

    def test_marketer_creates_a_lead_won_campaign_then_a_won_lead_gets_its_message(self):
        self.start_tour(
            "/odoo/action-gobysend_automation.gobysend_campaign_action/new?debug=1",
            "gobysend_record_campaign_tour",
            login="admin",
        )
        campaign = self.env["gobysend.campaign"].search([("name", "=", "Lead won")])
        self.assertEqual(
            (campaign.state, campaign.trigger_kind, campaign.model_name), ("running", "on_write", "crm.lead")
        )
        automation = campaign.automation_id
        self.assertTrue(automation.active)
        self.assertEqual(automation.trigger_field_ids.name, "stage_id")
        self.assertIn("stage_id.is_won", automation.filter_domain)

        self.lead.stage_id = self.stage_won
        self.env.cr.flush()  # the writer's transaction commits: its precommit hooks note the lead
        record_entries.enter_noted(self.env.registry)  # the engine's job starts its journey
        journey = campaign.journey_ids
        self.assertEqual((journey.partner_id, journey.res_id), (self.customer, self.lead.id))

        Journey = self.env["gobysend.journey"]
        self.env.flush_all()
        Journey._advance_claimed(Journey._claim_due(100))
        self.env.invalidate_all()
        message = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        self.assertEqual((message.partner_id, message.state), (self.customer, "queued"))
        body = message._render_for(
            message.workspace_id,
            message.partner_id,
            message.channel_type,
            message.subject_template,
            message.body_template,
            message.render_context,
        )[1]
        self.assertEqual(body, "Congratulations Lan Lead: Shop fit-out is Tour won.")
