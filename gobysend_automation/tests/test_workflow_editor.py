"""The model side of the campaign form's workflow editor: the tree it draws and where it puts
the steps it adds."""

from odoo.exceptions import UserError
from odoo.tests import tagged

from .test_campaign import CampaignCase


@tagged("post_install", "-at_install")
class TestWorkflowEditor(CampaignCase):
    def setUp(self):
        super().setUp()
        self.tag = self.env["res.partner.category"].create({"name": "VIP"})
        self.Step = self.env["gobysend.campaign.step"]

    def empty_campaign(self):
        return self.env["gobysend.campaign"].create(
            {"name": "Drawn", "workspace_id": self.workspace_a.id, "trigger_kind": "manual"}
        )

    def send(self, campaign, body, **position):
        return self.Step.create(
            dict({"campaign_id": campaign.id, "kind": "send", "channel_id": self.sms.id, "body": body}, **position)
        )

    def add(self, campaign, body, **where):
        """Add a send step where the editor's "+" button ``where`` would put it."""
        position = self.Step.workflow_insert_position(campaign.id, **where)
        return self.send(campaign, body, **position)

    def order(self, campaign, parent=None, branch=None):
        return [
            step.body
            for step in campaign.step_ids.sorted(lambda step: (step.sequence, step.id))
            if step.parent_id == (parent or self.Step) and (step.branch or False) == (branch or False)
        ]

    def test_the_tree_has_each_steps_place_branches_and_counts(self):
        campaign = self.empty_campaign()
        first = self.send(campaign, "Hello", sequence=10)
        condition = self.Step.create(
            {
                "campaign_id": campaign.id,
                "kind": "condition",
                "condition_kind": "tag",
                "tag_id": self.tag.id,
                "sequence": 20,
            }
        )
        vip = self.send(campaign, "VIP offer", parent_id=condition.id, branch="yes")
        self.launch(campaign)
        self.advance()
        tree = self.Step.workflow_tree(campaign.id)
        nodes = {node["id"]: node for node in tree["steps"]}
        self.assertEqual(set(nodes), {first.id, condition.id, vip.id})
        self.assertEqual(nodes[condition.id]["branches"], ["yes", "no"])
        self.assertEqual(nodes[condition.id]["branch_names"], {"yes": "Yes", "no": "No"})
        self.assertEqual(nodes[condition.id]["icon"], condition.kind_icon)
        self.assertEqual(nodes[condition.id]["kind_label"], "Condition")
        self.assertIn("VIP", nodes[condition.id]["summary"])
        self.assertEqual((nodes[vip.id]["parent_id"], nodes[vip.id]["branch"]), (condition.id, "yes"))
        self.assertEqual((nodes[first.id]["parent_id"], nodes[first.id]["branch"]), (False, False))
        # Five contacts passed the first step and the condition; none of them has the tag.
        self.assertEqual(nodes[first.id]["counts"]["done"], 5)
        self.assertEqual(nodes[condition.id]["counts"]["done"], 5)
        self.assertEqual((nodes[vip.id]["counts"]["done"], nodes[vip.id]["counts"]["waiting"]), (0, 0))
        self.assertEqual(set(nodes[first.id]["counts"]), {"waiting", "done", "sent", "opened", "clicked", "converted"})
        kinds = {kind["key"]: kind for kind in tree["kinds"]}
        self.assertTrue({"send", "wait", "condition", "split", "exit"} <= set(kinds))
        self.assertEqual(kinds["condition"]["icon"], condition.kind_icon)

    def test_branches_are_named_in_the_users_language(self):
        self.env["res.lang"]._activate_lang("vi_VN")
        self.env["ir.module.module"]._load_module_terms(["gobysend_automation"], ["vi_VN"], overwrite=True)
        campaign = self.empty_campaign()
        waiting = self.Step.create(
            {"campaign_id": campaign.id, "kind": "wait_event", "event_name": "paid", "delay_amount": 2}
        )
        nodes = {node["id"]: node for node in self.Step.with_context(lang="vi_VN").workflow_tree(campaign.id)["steps"]}
        self.assertEqual(nodes[waiting.id]["branches"], ["happened", "timed_out"])
        self.assertEqual(
            nodes[waiting.id]["branch_names"], {"happened": "Sự kiện đã xảy ra", "timed_out": "Hết thời gian chờ"}
        )
        english = self.Step.with_context(lang="en_US").workflow_tree(campaign.id)["steps"][0]
        self.assertEqual(english["branch_names"], {"happened": "Event happened", "timed_out": "Timed out"})

    def test_a_step_added_after_another_goes_between_it_and_the_next(self):
        campaign = self.empty_campaign()
        self.add(campaign, "one")
        two = self.add(campaign, "two", after_step_id=campaign.step_ids.id)
        self.add(campaign, "three", after_step_id=two.id)
        self.assertEqual(self.order(campaign), ["one", "two", "three"])
        # Between two and three, then again right after two: the sequences run out and the
        # siblings are renumbered, keeping their order.
        self.add(campaign, "two and a half", after_step_id=two.id)
        self.add(campaign, "two and a quarter", after_step_id=two.id)
        self.add(campaign, "two and an eighth", after_step_id=two.id)
        self.add(campaign, "two and a sixteenth", after_step_id=two.id)
        self.assertEqual(
            self.order(campaign),
            ["one", "two", "two and a sixteenth", "two and an eighth", "two and a quarter", "two and a half", "three"],
        )
        self.assertEqual(len(set(campaign.step_ids.mapped("sequence"))), 7)
        # The journey follows the same order.
        self.assertEqual(two._next_step().body, "two and a sixteenth")

    def test_a_step_added_at_the_head_of_a_branch_comes_first_on_it(self):
        campaign = self.empty_campaign()
        top = self.add(campaign, "top")
        condition = self.Step.create(
            dict(
                {"campaign_id": campaign.id, "kind": "condition", "condition_kind": "tag", "tag_id": self.tag.id},
                **self.Step.workflow_insert_position(campaign.id, after_step_id=top.id),
            )
        )
        later = self.add(campaign, "later", parent_id=condition.id, branch="yes")
        first = self.add(campaign, "first", parent_id=condition.id, branch="yes")
        self.add(campaign, "very first", parent_id=condition.id, branch="yes")
        self.assertEqual((first.parent_id, first.branch), (condition, "yes"))
        self.assertEqual(self.order(campaign, condition, "yes"), ["very first", "first", "later"])
        self.assertEqual(condition._next_step("yes").body, "very first")
        self.assertFalse(condition._next_step("no"), "the other branch is untouched")
        # The head of the workflow itself.
        self.add(campaign, "opening")
        self.assertEqual(self.order(campaign), ["opening", "top", False])
        self.assertEqual(later._next_step(), self.Step, "the condition is the last step of the workflow")

    def test_deleting_a_step_deletes_its_branches_and_the_rest_goes_on(self):
        campaign = self.empty_campaign()
        top = self.add(campaign, "top")
        condition = self.Step.create(
            dict(
                {"campaign_id": campaign.id, "kind": "condition", "condition_kind": "tag", "tag_id": self.tag.id},
                **self.Step.workflow_insert_position(campaign.id, after_step_id=top.id),
            )
        )
        self.add(campaign, "vip", parent_id=condition.id, branch="yes")
        last = self.add(campaign, "last", after_step_id=condition.id)
        condition.unlink()
        self.assertEqual([node["id"] for node in self.Step.workflow_tree(campaign.id)["steps"]], [top.id, last.id])
        self.assertEqual(top._next_step(), last)

    def test_adding_after_a_step_of_another_campaign_is_refused(self):
        campaign = self.empty_campaign()
        other = self.campaign(steps=None, name="Other")
        with self.assertRaisesRegex(UserError, "no longer in this campaign"):
            self.Step.workflow_insert_position(campaign.id, after_step_id=other.step_ids.id)
        with self.assertRaisesRegex(UserError, "no longer in this campaign"):
            self.Step.workflow_insert_position(campaign.id, parent_id=other.step_ids.id, branch="yes")

    def test_the_step_dialog_shows_the_fields_of_the_kind_chosen(self):
        """The editor opens the step form on a new step of a chosen kind: the form shows the groups
        of ``kind_fields``, which must follow the kind while the step is not saved yet."""
        spec = {"kind": {}, "kind_fields": {}}
        new = self.Step.with_context(default_kind="condition").onchange({}, [], spec)["value"]
        self.assertIn("tag_id", new["kind_fields"].split())
        changed = self.Step.onchange({"kind": "wait", "kind_fields": new["kind_fields"]}, ["kind"], spec)["value"]
        self.assertIn("delay_amount", changed["kind_fields"].split())
