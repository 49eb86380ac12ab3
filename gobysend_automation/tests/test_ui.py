"""The web client, driven in a browser as people use it (tours in static/tests/tours/)."""

from odoo import fields
from odoo.sql_db import TestCursor
from odoo.tests import new_test_user, tagged
from odoo.tools.misc import Callbacks

from .common import GobysendHttpCase


@tagged("post_install", "-at_install", "time_sensitive")
class TestUi(GobysendHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workspace_ui = cls.env["gobysend.workspace"].create(
            {"name": "Shop UI", "token_balance": 10, "quiet_hours_start": 0, "quiet_hours_end": 0}
        )
        cls.partner = cls.env["res.partner"].create(
            {"name": "Lan Tour", "email": "lan.tour@example.com", "phone": "+84 912 000 042"}
        )
        subscription = cls.env["gobysend.subscription"].create(
            {"workspace_id": cls.workspace_ui.id, "partner_id": cls.partner.id, "external_id": "C-042"}
        )
        subscription._set_consent("sms", "unsubscribed", "api")
        # The segment tour counts the contacts who joined in the last 30 days by Python's clock;
        # create_date was written by PostgreSQL's: put it on the same clock.
        cls.env.cr.execute(
            "UPDATE gobysend_subscription SET create_date = %s WHERE id = %s", (fields.Datetime.now(), subscription.id)
        )
        subscription.invalidate_recordset(["create_date"])
        attribute = cls.env["gobysend.attribute"].create(
            {"workspace_id": cls.workspace_ui.id, "key": "loyalty_tier", "value_type": "string"}
        )
        cls.env["gobysend.attribute.value"].create(
            {"attribute_id": attribute.id, "partner_id": cls.partner.id, "value_string": "Gold"}
        )
        cls.env["gobysend.event"].create(
            [
                {
                    "workspace_id": cls.workspace_ui.id,
                    "partner_id": cls.partner.id,
                    "name": "order_completed",
                    "properties": {"total": 420000},
                },
                {
                    "workspace_id": cls.workspace_ui.id,
                    "partner_id": cls.partner.id,
                    "name": "Pricing",
                    "kind": "page",
                    "url": "https://shop.example/pricing",
                },
            ]
        )
        cls.env["gobysend.device"].create(
            {
                "workspace_id": cls.workspace_ui.id,
                "partner_id": cls.partner.id,
                "token": "tour-device-token",
                "platform": "android",
            }
        )

    def test_admin_creates_a_workspace_and_a_key_then_reads_a_profile(self):
        self.start_tour("/odoo", "gobysend_workspace_and_profile_tour", login="admin")
        workspace = self.env["gobysend.workspace"].search([("name", "=", "Tour Workspace")])
        self.assertEqual(len(workspace), 1)
        key = workspace.api_key_ids
        self.assertEqual((len(key), key.name, key.active), (1, "Online shop", True))
        self.assertTrue(key.prefix.startswith("gbs_"))
        self.assertIn(self.env.ref("base.user_admin"), workspace.member_ids)
        # Only the hash of the key is kept on the key itself.
        self.assertEqual(len(key.sudo().key_hash), 64)

    def test_restricted_user_sees_only_their_workspaces(self):
        self.env["gobysend.subscription"].create({"workspace_id": self.workspace_a.id, "partner_id": self.partner.id})
        self.start_tour("/odoo", "gobysend_restricted_user_tour", login=self.user_a.login)

    def run_post_commit_hooks(self):
        """Run the requests' post-commit hooks when they commit, as a real cursor does (Odoo's
        test cursor drops them): "Send test" sends after its request commits."""
        commit = TestCursor.commit

        def commit_then_run_hooks(cursor):
            hooks, cursor.postcommit = cursor.postcommit, Callbacks()
            commit(cursor)
            cursor.postcommit = hooks  # the hooks find their data on the cursor
            hooks.run()

        self.patch(TestCursor, "commit", commit_then_run_hooks)

    def test_manager_configures_a_channel_and_sends_a_test(self):
        self.run_post_commit_hooks()
        self.start_tour(
            "/odoo/action-gobysend_automation.gobysend_channel_action", "gobysend_channel_send_test_tour", login="admin"
        )
        channel = self.env["gobysend.channel"].search([("name", "=", "Tour newsletter")])
        self.assertEqual(
            (channel.workspace_id, channel.channel_type, channel.state), (self.workspace_ui, "email", "test")
        )
        (message,) = self.env["gobysend.message"].search([("channel_id", "=", channel.id)])
        self.assertEqual((message.partner_id, message.state, message.is_test), (self.partner, "sent", True))
        self.assertEqual(self.workspace_ui.token_balance, 9, "a test send costs what any send costs")

    def test_marketer_creates_a_segment_and_sees_its_live_count(self):
        self.start_tour("/odoo", "gobysend_segment_tour", login="admin")
        segment = self.env["gobysend.segment"].search([("name", "=", "Recent contacts")])
        self.assertEqual(len(segment), 1)
        self.assertEqual(segment.workspace_id, self.workspace_ui)
        self.assertEqual((segment.condition_ids.kind, segment.condition_ids.days), ("joined", 30))
        # Saving only asked for a rebuild; the background job fills the members.
        self.assertTrue(segment.rebuild_requested)
        segment._rebuild()
        self.assertEqual(segment.current_membership_ids.partner_id, self.partner)

    def test_sales_user_adds_two_contacts_to_a_campaign(self):
        sales = new_test_user(
            self.env,
            login="gbs_tour_sales",
            groups="base.group_user,sales_team.group_sale_salesman,gobysend_automation.group_gobysend_user",
        )
        self.workspace_ui.member_ids = [(4, sales.id)]
        Partner = self.env["res.partner"]
        subscribed = Partner.create({"name": "Tour Lead One", "email": "one@example.com"})
        self.env["gobysend.subscription"].create({"workspace_id": self.workspace_ui.id, "partner_id": subscribed.id})
        newcomer = Partner.create({"name": "Tour Lead Two", "email": "two@example.com"})
        Campaign = self.env["gobysend.campaign"]
        channel = self.env["gobysend.channel"].create(
            {"name": "Tour SMS", "workspace_id": self.workspace_ui.id, "channel_type": "sms"}
        )
        campaign = Campaign.create({"name": "Spring welcome", "workspace_id": self.workspace_ui.id})
        self.env["gobysend.campaign.step"].create(
            {"campaign_id": campaign.id, "kind": "send", "channel_id": channel.id, "body": "Welcome"}
        )
        campaign.write({"state": "running"})
        elsewhere = Campaign.create({"name": "Spring elsewhere", "workspace_id": self.workspace_a.id})
        elsewhere.write({"state": "running"})
        self.start_tour("/odoo/action-contacts.action_contacts", "gobysend_campaign_add_tour", login=sales.login)
        self.assertEqual(campaign.journey_ids.partner_id, subscribed | newcomer)
        self.assertEqual(campaign.journey_ids.create_uid, sales)
        self.assertTrue(self.subscription_of(self.workspace_ui, newcomer))
        self.assertFalse(elsewhere.journey_ids)

    def test_manager_reads_a_campaigns_statistics(self):
        contacts = self.env["res.partner"].create(
            [{"name": f"Stats {n}", "phone": f"+8491200010{n}"} for n in range(5)]
        )
        self.env["gobysend.subscription"].create(
            [{"workspace_id": self.workspace_ui.id, "partner_id": partner.id} for partner in contacts]
        )
        channel = self.env["gobysend.channel"].create(
            {"name": "Stats SMS", "workspace_id": self.workspace_ui.id, "channel_type": "sms"}
        )
        campaign = self.env["gobysend.campaign"].create({"name": "Spring stats", "workspace_id": self.workspace_ui.id})
        self.env["gobysend.campaign.step"].create(
            {"campaign_id": campaign.id, "kind": "send", "channel_id": channel.id, "body": "Hello"}
        )
        campaign.write({"state": "running"})
        self.env["gobysend.journey"]._enter(campaign, [{"partner_id": partner.id} for partner in contacts], run=True)
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)], order="id")
        self.assertEqual(len(messages), 5)
        now = fields.Datetime.now()
        for message, state in zip(messages, ("clicked", "opened", "bounced", "sent", "sent"), strict=True):
            message.write({"state": state, "sent_at": now})
        self.start_tour(
            "/odoo/action-gobysend_automation.gobysend_campaign_action",
            "gobysend_campaign_statistics_tour",
            login="admin",
        )
