"""A campaign's workflow exported as JSON and imported again, in its workspace or another."""

import base64
import json

from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, tagged

from .. import workflow_json
from .test_campaign import CampaignCase


@tagged("post_install", "-at_install")
class TestWorkflowJson(CampaignCase):
    def setUp(self):
        super().setUp()
        self.Step = self.env["gobysend.campaign.step"]
        self.tag = self.env["res.partner.category"].create({"name": "JSON VIP"})
        self.segment = self.env["gobysend.segment"].create({"name": "Buyers", "workspace_id": self.workspace_a.id})
        self.template = self.env["gobysend.message.template"].create(
            {
                "name": "Welcome",
                "workspace_id": self.workspace_a.id,
                "channel_type": "sms",
                "body": "Welcome {{ contact.name }}",
            }
        )

    def workflow(self):
        """Send (with a template) → wait → condition on engagement with the first message:
        yes → a tag; no → exit; then a last message."""
        campaign = self.campaign(
            [
                {"kind": "send", "channel_id": self.sms.id, "template_id": self.template.id, "name": "Hello"},
                {"kind": "wait", "timing": "delay", "delay_amount": 2, "delay_unit": "days"},
            ],
            reentry="every_time",
            goal_event_name="order_paid",
            segment_ids=[(6, 0, self.segment.ids)],
            tag_ids=[(6, 0, self.tag.ids)],
            partner_domain="[('email', '!=', False)]",
        )
        hello = campaign.step_ids.filtered(lambda step: step.kind == "send")
        condition = self.Step.create(
            {
                "campaign_id": campaign.id,
                "sequence": 5,
                "kind": "condition",
                "condition_kind": "engagement",
                "engagement": "clicked",
                "engagement_step_id": hello.id,
            }
        )
        self.Step.create(
            {
                "campaign_id": campaign.id,
                "parent_id": condition.id,
                "branch": "yes",
                "kind": "tag",
                "tag_id": self.tag.id,
                "tag_action": "add",
            }
        )
        self.Step.create({"campaign_id": campaign.id, "parent_id": condition.id, "branch": "no", "kind": "exit"})
        self.Step.create(
            {"campaign_id": campaign.id, "sequence": 9, "kind": "send", "channel_id": self.sms.id, "body": "Bye"}
        )
        self.Step.create(
            {
                "campaign_id": campaign.id,
                "sequence": 11,
                "kind": "ab_test",
                "channel_id": self.sms.id,
                "ab_test_share": 30,
                "ab_metric": "click",
                "variant_ids": [
                    (0, 0, {"name": "Short", "body": "Hi A"}),
                    (0, 0, {"name": "Long", "template_id": self.template.id}),
                ],
            }
        )
        return campaign

    def import_(self, data, workspace=None, **wizard):
        raw = data if isinstance(data, bytes | str) else json.dumps(data)
        raw = raw.encode() if isinstance(raw, str) else raw
        wizard = self.env["gobysend.workflow.import.wizard"].create(
            dict({"workspace_id": (workspace or self.workspace_a).id, "file": base64.b64encode(raw)}, **wizard)
        )
        wizard.action_import()
        return wizard

    def test_export_then_import_gives_the_same_tree(self):
        original = self.workflow()
        exported = workflow_json.export_campaign(original)
        self.assertEqual((exported["format"], exported["version"]), ("gobysend.workflow", 1))
        self.assertEqual(exported["campaign"]["segment_ids"], [{"name": "Buyers"}])
        self.assertEqual(exported["steps"][0]["template_id"]["body"], "Welcome {{ contact.name }}")
        self.assertEqual(set(exported["steps"][2]["branches"]), {"yes", "no"})
        self.assertFalse([step for step in exported["steps"] if "hook_secret" in step], "secrets stay home")
        wizard = self.import_(json.loads(workflow_json.dumps(original)), name="Copy")
        copy = wizard.campaign_id
        self.assertEqual((copy.name, copy.state, copy.workspace_id), ("Copy", "draft", self.workspace_a))
        again = workflow_json.export_campaign(copy)
        self.assertEqual(again["steps"], exported["steps"])
        self.assertEqual(dict(again["campaign"], name="Promo"), exported["campaign"])
        # Its own records: new steps and templates, the workspace's segment and channel.
        self.assertFalse(copy.step_ids & original.step_ids)
        first = copy.step_ids.filtered(lambda step: step.name == "Hello")
        self.assertNotEqual(first.template_id, self.template)
        self.assertEqual(first.template_id.workspace_id, self.workspace_a)
        condition = copy.step_ids.filtered(lambda step: step.kind == "condition")
        self.assertEqual(condition.engagement_step_id, first)
        ab_test = copy.step_ids.filtered(lambda step: step.kind == "ab_test")
        self.assertEqual(ab_test.variant_ids.mapped("name"), ["Short", "Long"])
        self.assertEqual(ab_test.variant_ids[1].template_id.body, "Welcome {{ contact.name }}")
        self.assertNotEqual(ab_test.variant_ids[1].template_id, self.template)
        self.assertEqual(copy.segment_ids, self.segment)
        self.assertNotIn("Left empty", wizard.result)

    def test_importing_into_another_workspace_never_points_at_the_first_ones_records(self):
        data = workflow_json.export_campaign(self.workflow())
        sms_b = self.env["gobysend.channel"].create(
            {"name": "Texts", "workspace_id": self.workspace_b.id, "channel_type": "sms", "state": "enabled"}
        )
        wizard = self.import_(data, workspace=self.workspace_b)
        copy = wizard.campaign_id
        self.assertEqual(copy.workspace_id, self.workspace_b)
        self.assertFalse(copy.segment_ids, "workspace B has no segment “Buyers”")
        self.assertIn("Buyers", wizard.result)
        self.assertEqual(copy.step_ids.channel_id, sms_b)
        self.assertIn("“Texts” is used instead", wizard.result)
        self.assertEqual(copy.step_ids.template_id.workspace_id, self.workspace_b)
        for step in copy.step_ids:
            for name in ("channel_id", "segment_id", "attribute_id", "template_id"):
                self.assertIn(step[name].workspace_id, (self.workspace_b, self.env["gobysend.workspace"]))

    def test_a_workflow_needing_a_missing_channel_is_refused_naming_the_step(self):
        data = workflow_json.export_campaign(self.workflow())
        with self.assertRaisesRegex(UserError, "Step 1: .*choose the channel"):
            self.import_(data, workspace=self.workspace_b)

    def test_bad_files_are_refused_with_what_is_wrong(self):
        data = workflow_json.export_campaign(self.workflow())
        with self.assertRaisesRegex(UserError, "it is not JSON"):
            self.import_("{'steps': [")
        with self.assertRaisesRegex(UserError, "version 7 is not supported"):
            self.import_(dict(data, version=7))
        with self.assertRaisesRegex(UserError, "not a Gobysend workflow"):
            self.import_({"steps": []})
        data["steps"][1]["kind"] = "teleport"
        with self.assertRaisesRegex(UserError, "Step 2: unknown step kind “teleport”"):
            self.import_(data)
        data["steps"][1]["kind"] = "wait"
        data["steps"][1]["colour"] = "red"
        with self.assertRaisesRegex(UserError, "unknown field “colour”"):
            self.import_(data)
        del data["steps"][1]["colour"]
        data["steps"][1]["delay_amount"] = "two"
        with self.assertRaisesRegex(UserError, "must be a number"):
            self.import_(data)
        with self.assertRaisesRegex(UserError, "larger than 2 MB"):
            self.import_(b" " * (workflow_json.MAX_SIZE + 1))

    def test_a_manager_imports_only_into_and_from_their_own_workspace(self):
        data = workflow_json.export_campaign(self.workflow())
        segment_b = self.env["gobysend.segment"].create({"name": "B only", "workspace_id": self.workspace_b.id})
        data["campaign"]["segment_ids"] = [{"name": segment_b.name}]
        Wizard = self.env["gobysend.workflow.import.wizard"].with_user(self.manager_a)
        wizard = Wizard.create(
            {"workspace_id": self.workspace_a.id, "file": base64.b64encode(json.dumps(data).encode())}
        )
        wizard.action_import()
        self.assertFalse(wizard.campaign_id.segment_ids, "workspace B's segment of the same name is not taken")
        self.assertIn("B only", wizard.result)
        wizard = Wizard.create(
            {"workspace_id": self.workspace_b.id, "file": base64.b64encode(json.dumps(data).encode())}
        )
        with self.assertRaises(AccessError):
            wizard.action_import()


@tagged("post_install", "-at_install")
class TestWorkflowDownload(HttpCase):
    def test_the_campaign_form_downloads_its_workflow(self):
        workspace = self.env["gobysend.workspace"].create({"name": "Download shop"})
        campaign = self.env["gobysend.campaign"].create(
            {"name": "Downloaded", "workspace_id": workspace.id, "trigger_kind": "manual"}
        )
        self.env["gobysend.campaign.step"].create(
            {"campaign_id": campaign.id, "kind": "wait", "timing": "delay", "delay_amount": 3}
        )
        action = campaign.action_export_workflow()
        self.authenticate("admin", "admin")
        response = self.url_open(action["url"])
        self.assertEqual(response.status_code, 200)
        self.assertIn("attachment", response.headers["Content-Disposition"])
        data = response.json()
        self.assertEqual(data["campaign"]["name"], "Downloaded")
        self.assertEqual([step["delay_amount"] for step in data["steps"]], [3])
        self.authenticate(None, None)
        self.assertNotEqual(self.url_open(action["url"], allow_redirects=False).status_code, 200)
