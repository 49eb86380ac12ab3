from odoo import _, fields, models

from ..tools import count_related, related_list_action

GOBYSEND_USER = "gobysend_automation.group_gobysend_user"


class ResPartner(models.Model):
    _inherit = "res.partner"

    gobysend_birthday = fields.Date(string="Birthday")
    # The workspace whose tracking API created this contact: the only one whose API may change
    # the contact's own fields once other workspaces share it. Empty for every other partner,
    # so that the column costs nothing to contacts made elsewhere in Odoo. For administrators
    # only: members of other workspaces sharing the contact must not read that workspace's name.
    gobysend_origin_workspace_id = fields.Many2one(
        "gobysend.workspace",
        string="Created by Workspace",
        readonly=True,
        copy=False,
        index="btree_not_null",
        ondelete="set null",
        groups="base.group_system",
    )
    # The profile is for Gobysend users only: other users reading a partner (exports, RPC reads
    # of all fields) must not trip over models they have no access to.
    gobysend_subscription_ids = fields.One2many(
        "gobysend.subscription", "partner_id", string="Gobysend Workspaces", groups=GOBYSEND_USER
    )
    gobysend_attribute_value_ids = fields.One2many(
        "gobysend.attribute.value", "partner_id", string="Attributes", groups=GOBYSEND_USER
    )
    gobysend_event_ids = fields.One2many("gobysend.event", "partner_id", string="Activity", groups=GOBYSEND_USER)
    gobysend_device_ids = fields.One2many("gobysend.device", "partner_id", string="Devices", groups=GOBYSEND_USER)
    gobysend_event_count = fields.Integer(compute="_compute_gobysend_counts", string="Events", groups=GOBYSEND_USER)
    gobysend_device_count = fields.Integer(
        compute="_compute_gobysend_counts", string="Device Count", groups=GOBYSEND_USER
    )
    gobysend_subscription_count = fields.Integer(
        compute="_compute_gobysend_counts", string="Workspace Count", groups=GOBYSEND_USER
    )
    gobysend_segment_membership_ids = fields.One2many(
        "gobysend.segment.membership",
        "partner_id",
        string="Segments",
        domain=[("left_at", "=", False)],
        groups=GOBYSEND_USER,
    )
    # Every entry into and exit from a segment: the contact's transitions, as workflows see them.
    gobysend_segment_history_ids = fields.One2many(
        "gobysend.segment.membership", "partner_id", string="Segment History", groups=GOBYSEND_USER
    )

    def _compute_gobysend_counts(self):
        # Counted under the current user's record rules: a user sees the activity of their
        # own workspaces only.
        for model, field in (
            ("gobysend.event", "gobysend_event_count"),
            ("gobysend.device", "gobysend_device_count"),
            ("gobysend.subscription", "gobysend_subscription_count"),
        ):
            counts = count_related(self, model, "partner_id")
            for partner in self:
                partner[field] = counts.get(partner, 0)

    def write(self, vals):
        result = super().write(vals)
        # Contact filters of segments may use any field: re-evaluate in the background.
        self.env["gobysend.segment"]._mark_dirty(self.ids, "contact")
        return result

    def _gobysend_action(self, model, name):
        self.ensure_one()
        return related_list_action(self, model, "partner_id", name)

    def action_gobysend_view_events(self):
        return self._gobysend_action("gobysend.event", _("Activity of %(name)s", name=self.display_name))

    def action_gobysend_view_devices(self):
        return self._gobysend_action("gobysend.device", _("Devices of %(name)s", name=self.display_name))

    def action_gobysend_view_subscriptions(self):
        return self._gobysend_action("gobysend.subscription", _("Workspaces of %(name)s", name=self.display_name))
