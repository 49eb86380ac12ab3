from odoo import _, api, fields, models
from odoo.exceptions import UserError

from .. import templating


class GobysendSendMessageWizard(models.TransientModel):
    """Sales staff send a one-off message to contacts, through every send-time rule."""

    _name = "gobysend.send.message.wizard"
    _description = "Send a Gobysend Message"

    partner_ids = fields.Many2many("res.partner", string="Contacts", required=True)
    channel_id = fields.Many2one(
        "gobysend.channel",
        required=True,
        domain="[('state', '!=', 'disabled')]",
        help="Only your workspaces' channels.",
    )
    channel_type = fields.Selection(related="channel_id.channel_type", string="Channel Type")
    template_id = fields.Many2one(
        "gobysend.message.template",
        domain="[('workspace_id', '=', workspace_id), ('channel_type', '=', channel_type)]",
    )
    workspace_id = fields.Many2one(related="channel_id.workspace_id")
    subject = fields.Char()
    body = fields.Text(required=True)

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        if self.env.context.get("active_model") == "res.partner" and "partner_ids" in fields_list:
            values["partner_ids"] = [(6, 0, self.env.context.get("active_ids", []))]
        return values

    @api.onchange("template_id")
    def _onchange_template_id(self):
        if self.template_id:
            self.subject = self.template_id.subject
            self.body = self.template_id.body

    def action_send(self):
        self.ensure_one()
        # Reading the channel as the user applies the workspace record rules.
        channel = self.channel_id.with_user(self.env.user)
        channel.check_access("read")
        try:
            templating.check_syntax(self.subject, "subject")
            templating.check_syntax(
                self.body, "body", html=channel.channel_type == "email", channel_type=channel.channel_type
            )
        except Exception as error:
            raise UserError(str(error)) from None
        messages = self.env["gobysend.message"]
        for partner in self.partner_ids:
            messages |= messages._enqueue(partner, channel.sudo(), self.body, subject=self.subject, origin=partner)
        # Sent once this request has committed, before its answer leaves (a retried request
        # cannot send them twice): the list opened below shows each message's outcome.
        messages._send_after_commit(messages.ids)
        return {
            "type": "ir.actions.act_window",
            "name": _("Messages sent"),
            "res_model": "gobysend.message",
            "view_mode": "list,form",
            "views": [(False, "list"), (False, "form")],
            "domain": [("id", "in", messages.ids)],
            "target": "current",
        }
