from odoo import _, api, fields, models
from odoo.exceptions import UserError


class GobysendListMembersWizard(models.TransientModel):
    """Add contacts to a list (a static segment) or take them out, by hand: from the contacts
    selected in a list of contacts or subscriptions, or from the list's own form."""

    _name = "gobysend.list.members.wizard"
    _description = "Add to or Remove from a Gobysend List"

    action = fields.Selection([("add", "Add to the list"), ("remove", "Remove from the list")], default="add")
    segment_id = fields.Many2one(
        "gobysend.segment",
        string="List",
        required=True,
        ondelete="cascade",
        domain="[('segment_type', '=', 'static')]",
    )
    partner_ids = fields.Many2many("res.partner", string="Contacts")

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        model, ids = self.env.context.get("active_model"), self.env.context.get("active_ids") or []
        if model == "res.partner":
            values["partner_ids"] = [(6, 0, ids)]
        elif model == "gobysend.subscription":
            subscriptions = self.env["gobysend.subscription"].browse(ids)
            values["partner_ids"] = [(6, 0, subscriptions.partner_id.ids)]
        elif model == "gobysend.segment" and len(ids) == 1:
            values["segment_id"] = ids[0]
        return values

    def action_apply(self):
        self.ensure_one()
        segment = self.segment_id
        # The user must see the list (record rules: their workspaces) and the contacts.
        segment.check_access("read")
        if segment.segment_type != "static":
            raise UserError(_("Choose a list: the members of a segment of conditions follow its conditions."))
        partners = self.partner_ids._filtered_access("read")
        if not partners:
            raise UserError(_("Choose the contacts to add to the list or remove from it."))
        # sudo: membership rows are the engine's; the list is one of the user's workspaces and
        # only that workspace's contacts enter it (see _change_list_members).
        if self.action == "add":
            entered, _left = segment.sudo()._change_list_members(add=partners.ids)
            message = _("%(count)s contacts added to %(list)s.", count=entered, list=segment.display_name)
        else:
            _entered, left = segment.sudo()._change_list_members(remove=partners.ids)
            message = _("%(count)s contacts removed from %(list)s.", count=left, list=segment.display_name)
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"message": message, "type": "success", "next": {"type": "ir.actions.act_window_close"}},
        }
