"""A workspace manager stays inside their workspace: what their segment filters can read, which
outbox records they can rewrite, and who can add tokens."""

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import Form, new_test_user, tagged

from .common import GobysendCase


@tagged("post_install", "-at_install")
class TenantBoundaryCase(GobysendCase):
    """Manager A is a Gobysend manager and a member of workspace A only. Lan is a contact of both
    workspaces, Hoa of workspace B only, Minh of workspace A only; Minh's colleague works for
    another company, which manager A cannot see."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.admin = new_test_user(cls.env, login="gbs_boundary_admin", groups="base.group_user,base.group_system")
        cls.other_company = cls.env["res.company"].create({"name": "Other Company"})
        Partner = cls.env["res.partner"]
        cls.lan = Partner.create({"name": "Lan", "email": "lan@example.com", "city": "Hà Nội"})
        cls.hoa = Partner.create({"name": "Hoa", "email": "hoa@example.com"})
        cls.minh = Partner.create({"name": "Minh", "email": "minh@example.com", "user_id": cls.manager_a.id})
        cls.colleague = Partner.create(
            {
                "name": "Minh's colleague",
                "email": "ceo@other.example",
                "parent_id": cls.minh.id,
                "company_id": cls.other_company.id,
            }
        )
        # An internal user's own contact is a contact of workspace A too.
        cls.staff = new_test_user(cls.env, login="gbs_staff", groups="base.group_user")
        for workspace, partners in (
            (cls.workspace_a, cls.lan | cls.minh | cls.staff.partner_id),
            (cls.workspace_b, cls.lan | cls.hoa),
        ):
            for partner in partners:
                cls.env["gobysend.subscription"].create({"workspace_id": workspace.id, "partner_id": partner.id})
        cls.env["gobysend.event"].create(
            [
                {"workspace_id": cls.workspace_a.id, "partner_id": cls.lan.id, "name": "visited_a"},
                {"workspace_id": cls.workspace_b.id, "partner_id": cls.lan.id, "name": "visited_b"},
            ]
        )
        tier_b = cls.env["gobysend.attribute"].create(
            {"workspace_id": cls.workspace_b.id, "key": "tier", "value_type": "string"}
        )
        cls.env["gobysend.attribute.value"].create(
            {"attribute_id": tier_b.id, "partner_id": cls.lan.id, "value_string": "bronze"}
        )
        cls.segment_b = cls.env["gobysend.segment"].create(
            {"name": "B's Lan", "workspace_id": cls.workspace_b.id, "condition_ids": [(0, 0, {"kind": "domain"})]}
        )
        cls.segment_b._rebuild()
        cls.lan.message_post(body="Secret note about Lan")


class TestSegmentFilterReach(TenantBoundaryCase):
    def rebuild_as_scheduler(self, segment):
        """Rebuild ``segment`` as the scheduler does: as the superuser."""
        segment.with_env(self.env)._rebuild()

    def manager_segment(self, partner_domain, name="Filtered"):
        return (
            self.env["gobysend.segment"]
            .with_user(self.manager_a)
            .create(
                {
                    "name": name,
                    "workspace_id": self.workspace_a.id,
                    "condition_ids": [(0, 0, {"kind": "domain", "partner_domain": partner_domain})],
                }
            )
        )

    def assertFilterRefused(self, partner_domain, path):
        with self.assertRaises(ValidationError) as caught:
            self.manager_segment(partner_domain)
        self.assertIn(f"“{path}”", caught.exception.args[0])
        # The form's live count says the same, and counts no one.
        form = Form(self.env["gobysend.segment"].with_user(self.manager_a))
        form.name = "Draft"
        form.workspace_id = self.workspace_a
        with form.condition_ids.new() as condition:
            condition.kind = "domain"
            condition.partner_domain = partner_domain
        self.assertEqual(form.preview_count, 0)
        self.assertIn(f"“{path}”", form.preview_error)

    def test_the_guard_data_is_there(self):
        # What the refused filters would find, were they evaluated as superuser.
        segment = self.env["gobysend.segment"].create(
            {
                "name": "Admin's",
                "workspace_id": self.workspace_a.id,
                "condition_ids": [(0, 0, {"kind": "domain", "partner_domain": "[('child_ids.email', '!=', False)]"})],
            }
        )
        self.assertEqual(segment.preview_count, 1)
        self.assertEqual(self.segment_b.member_count, 2)

    def test_a_filter_cannot_reach_another_workspaces_events(self):
        self.assertFilterRefused("[('gobysend_event_ids.name', '=', 'visited_b')]", "gobysend_event_ids")
        self.assertFilterRefused(
            f"[('gobysend_event_ids', 'any', [('workspace_id', '=', {self.workspace_b.id})])]", "gobysend_event_ids"
        )

    def test_a_filter_cannot_reach_another_workspaces_attributes(self):
        self.assertFilterRefused(
            "[('gobysend_attribute_value_ids.value_string', '=', 'bronze')]", "gobysend_attribute_value_ids"
        )

    def test_a_filter_cannot_reach_another_workspaces_subscriptions(self):
        self.assertFilterRefused(
            f"[('gobysend_subscription_ids.workspace_id', '=', {self.workspace_b.id})]", "gobysend_subscription_ids"
        )
        # Naming another workspace's subscription by its id says whose it is too.
        subscription_b = self.subscription_of(self.workspace_b, self.lan)
        self.assertFilterRefused(
            f"[('gobysend_subscription_ids', 'in', [{subscription_b.id}])]", "gobysend_subscription_ids"
        )

    def test_a_filter_cannot_reach_another_workspaces_memberships(self):
        self.assertFilterRefused(
            f"[('gobysend_segment_membership_ids.segment_id', '=', {self.segment_b.id})]",
            "gobysend_segment_membership_ids",
        )

    def test_a_filter_cannot_reach_user_accounts(self):
        self.assertFilterRefused("[('user_ids.login', '=', 'gbs_staff')]", "user_ids")
        self.assertFilterRefused("[('create_uid.login', '=', 'admin')]", "create_uid")
        # Also inside a sub-filter of another model.
        self.assertFilterRefused("[('child_ids', 'any', [('user_ids.login', '=', 'gbs_staff')])]", "child_ids.user_ids")

    def test_a_filter_cannot_reach_mail_internals(self):
        self.assertFilterRefused("[('message_ids.body', 'ilike', 'secret')]", "message_ids")
        self.assertFilterRefused(
            f"[('message_partner_ids', 'in', [{self.manager_a.partner_id.id}])]", "message_partner_ids"
        )

    def test_a_filter_counts_nothing_of_another_company(self):
        # Minh's colleague belongs to a company manager A cannot see.
        partner_domain = "[('child_ids.email', '=', 'ceo@other.example')]"
        segment = self.manager_segment(partner_domain)
        self.assertEqual(segment.preview_count, 0)
        # The background rebuild runs as superuser, with the rights of the user who set the filter.
        self.rebuild_as_scheduler(segment)
        self.assertEqual(segment.member_count, 0)
        self.assertFalse(segment.current_membership_ids)
        self.assertEqual(segment.filter_user_id, self.manager_a)
        # The same filter set by an administrator who sees that company finds Minh.
        self.admin.company_ids = [(4, self.other_company.id)]
        segment.with_user(self.admin).write({"condition_ids": [(1, segment.condition_ids.id, {"negate": False})]})
        self.assertEqual(segment.filter_user_id, self.admin)
        self.rebuild_as_scheduler(segment)
        self.assertEqual(segment.current_membership_ids.partner_id, self.minh)

    def test_contact_data_the_manager_can_read_is_filtered_as_before(self):
        segment = self.manager_segment("[('city', '=', 'Hà Nội')]")
        self.assertEqual(segment.preview_count, 1)
        self.rebuild_as_scheduler(segment)
        self.assertEqual(segment.current_membership_ids.partner_id, self.lan)
        # Naming users by id is no reading of their accounts: "my contacts" works, also when the
        # scheduler (a superuser) rebuilds the segment: uid is the author's.
        mine = self.manager_segment("[('user_id', '=', uid)]", name="Mine")
        self.assertEqual(mine.preview_count, 1)
        self.rebuild_as_scheduler(mine)
        self.assertEqual(mine.current_membership_ids.partner_id, self.minh)

    def test_whoever_changes_the_conditions_evaluates_them(self):
        segment = self.manager_segment("[('city', '=', 'Hà Nội')]")
        segment.condition_ids.sudo().with_user(self.admin).write({"negate": True})
        self.assertEqual(segment.filter_user_id, self.admin)
        self.env["gobysend.segment.condition"].with_user(self.manager_a).create(
            {"segment_id": segment.id, "kind": "joined", "days": 7}
        )
        self.assertEqual(segment.filter_user_id, self.manager_a)
        with self.assertRaises(AccessError):
            segment.with_user(self.manager_a).write({"filter_user_id": self.admin.id})
        self.assertEqual(segment.filter_user_id, self.manager_a)

    def test_a_condition_cannot_move_into_another_workspaces_segment(self):
        segment = self.manager_segment("[('id', '=', 0)]")
        for values in (
            {"segment_id": self.segment_b.id},
            {"segment_id": False, "parent_id": self.segment_b.condition_ids.id},
        ):
            with self.subTest(values=values), self.assertRaises(UserError):
                segment.condition_ids.with_user(self.manager_a).write(values)
        self.assertEqual(len(self.segment_b.condition_ids), 1)
        self.assertFalse(self.segment_b.condition_ids.child_ids)
        self.assertEqual(segment.condition_ids.segment_id, segment)

    def test_a_deleted_author_leaves_the_filter_matching_no_one(self):
        segment = self.manager_segment("[('city', '=', 'Hà Nội')]")
        self.rebuild_as_scheduler(segment)
        self.assertEqual(segment.current_membership_ids.partner_id, self.lan)
        segment.sudo().filter_user_id = False
        self.rebuild_as_scheduler(segment)
        self.assertFalse(segment.current_membership_ids)


class TestOutboxRecordsStayInTheirWorkspace(TenantBoundaryCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        Channel = cls.env["gobysend.channel"]
        common = {"channel_type": "sms", "state": "enabled"}
        cls.sms_a = Channel.create(dict(common, name="SMS A", workspace_id=cls.workspace_a.id, token_cost=2))
        cls.free_sms_a = Channel.create(dict(common, name="Free SMS A", workspace_id=cls.workspace_a.id, token_cost=0))
        cls.sms_b = Channel.create(dict(common, name="SMS B", workspace_id=cls.workspace_b.id, token_cost=1))
        cls.message = cls.env["gobysend.message"]._enqueue(cls.lan, cls.sms_a, "Hello")

    def test_a_manager_cannot_rewrite_what_a_message_is(self):
        message = self.message.with_user(self.manager_a)
        for values in (
            {"channel_id": self.free_sms_a.id},
            {"channel_id": self.sms_b.id},
            {"channel_type": "email"},
            {"token_cost": 0},
            {"partner_id": self.hoa.id},
            {"workspace_id": self.workspace_b.id},
        ):
            with self.subTest(values=values), self.assertRaises(UserError):
                message.write(values)
        self.assertEqual(
            (self.message.channel_id, self.message.token_cost, self.message.partner_id, self.message.workspace_id),
            (self.sms_a, 2, self.lan, self.workspace_a),
        )
        # What managers do with messages still works.
        message.action_cancel()
        self.assertEqual(self.message.state, "cancelled")

    def test_a_message_cannot_use_another_workspaces_channel(self):
        with self.assertRaises(ValidationError):
            self.env["gobysend.message"].create(
                {
                    "workspace_id": self.workspace_a.id,
                    "partner_id": self.lan.id,
                    "channel_id": self.sms_b.id,
                    "channel_type": "sms",
                }
            )

    def test_ledger_memberships_and_consent_records_are_read_only_to_managers(self):
        # Already so before: a guard that they stay so.
        self.workspace_a.with_user(self.admin).top_up(5)
        everyone = self.env["gobysend.segment"].create(
            {"name": "Everyone", "workspace_id": self.workspace_a.id, "condition_ids": [(0, 0, {"kind": "domain"})]}
        )
        everyone._rebuild()
        subscription = self.env["gobysend.subscription"].search(
            [("workspace_id", "=", self.workspace_a.id), ("partner_id", "=", self.lan.id)]
        )
        consent = self.env["gobysend.consent.log"].create(
            {"subscription_id": subscription.id, "channel": "email", "state": "unsubscribed", "source": "manual"}
        )
        ledger = self.env["gobysend.token.transaction"].search([("workspace_id", "=", self.workspace_a.id)])
        for records, values in (
            (ledger, {"workspace_id": self.workspace_b.id, "amount": 1000}),
            (everyone.current_membership_ids, {"segment_id": self.segment_b.id}),
            (consent, {"subscription_id": self.subscription_of(self.workspace_b, self.lan).id}),
        ):
            self.assertTrue(records)
            with self.subTest(model=records._name), self.assertRaises(UserError):
                records.with_user(self.manager_a).write(values)
            with self.subTest(model=records._name), self.assertRaises(AccessError):
                records.with_user(self.manager_a).copy()


class TestTokenBalance(TenantBoundaryCase):
    def ledger(self, workspace):
        return self.env["gobysend.token.transaction"].search([("workspace_id", "=", workspace.id)], order="id")

    def test_a_manager_cannot_mint_tokens(self):
        with self.assertRaises(AccessError):
            self.workspace_a.with_user(self.manager_a).write({"token_balance": 1_000_000})
        with self.assertRaises(AccessError):
            self.env["gobysend.workspace"].with_user(self.manager_a).create({"name": "Rich", "token_balance": 1000})
        with self.assertRaises(AccessError):
            self.workspace_a.with_user(self.manager_a).top_up(1000)
        with self.assertRaises(AccessError):
            self.env["gobysend.token.top.up.wizard"].with_user(self.manager_a).create(
                {"workspace_id": self.workspace_a.id, "amount": 1000}
            )
        self.assertEqual(self.workspace_a.token_balance, 0)
        self.assertFalse(self.ledger(self.workspace_a))

    def test_an_administrator_tops_up_through_the_ledger(self):
        action = self.workspace_a.with_user(self.admin).action_open_top_up_wizard()
        wizard = Form(self.env[action["res_model"]].with_user(self.admin).with_context(**action["context"]))
        wizard.amount = 250
        wizard.note = "Invoice INV/2026/0042"
        wizard.save().action_top_up()
        self.assertEqual(self.workspace_a.token_balance, 250)
        (entry,) = self.ledger(self.workspace_a)
        self.assertEqual((entry.amount, entry.balance_after, entry.note), (250, 250, "Invoice INV/2026/0042"))
        self.assertEqual(entry.create_uid, self.admin)
        self.workspace_a.with_user(self.admin).top_up(50)
        self.assertEqual(self.workspace_a.token_balance, 300)
        self.assertEqual(sum(self.ledger(self.workspace_a).mapped("amount")), 300)
        with self.assertRaises(ValidationError):
            self.workspace_a.with_user(self.admin).top_up(-10)

    def test_the_ledger_adds_up_to_the_balance_whatever_sets_it(self):
        # Code running as superuser (data files, scripts) may still set a balance outright.
        workspace = self.env["gobysend.workspace"].create({"name": "Seeded", "token_balance": 40})
        workspace.token_balance = 25
        workspace.with_user(self.admin).top_up(5)
        self.assertEqual(workspace.token_balance, 30)
        self.assertEqual(self.ledger(workspace).mapped("amount"), [40, -15, 5])
        self.assertEqual(self.ledger(workspace).mapped("balance_after"), [40, 25, 30])

    def test_duplicating_a_workspace_copies_no_tokens(self):
        self.workspace_a.with_user(self.admin).top_up(100)
        copy = self.workspace_a.with_user(self.manager_a).copy()
        self.assertEqual(copy.token_balance, 0)
