from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from .. import templating
from ..exceptions import InvalidInput
from .gobysend_channel import CHANNEL_TYPES


class GobysendMessageTemplate(models.Model):
    """A reusable message: Jinja2 subject and body filled in for each contact at send time."""

    _name = "gobysend.message.template"
    _inherit = ["gobysend.workspace.bound"]
    _description = "Gobysend Message Template"
    _order = "workspace_id, name, id"

    name = fields.Char(required=True)
    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", index=True)
    channel_type = fields.Selection(CHANNEL_TYPES, string="Channel", required=True, default="email")
    subject = fields.Char(help="Jinja2, e.g. “Hello {{ contact.name }}”. Used by email and push.")
    body = fields.Text(
        required=True,
        help="Jinja2 with the variables contact (fields and attributes), workspace, event and record.",
    )
    preview_partner_id = fields.Many2one("res.partner", string="Preview For")
    preview_subject = fields.Char(compute="_compute_preview")
    preview_body = fields.Text(compute="_compute_preview", string="Preview")

    @api.constrains("subject", "body", "channel_type")
    def _check_template_syntax(self):
        for template in self:
            try:
                templating.check_syntax(template.subject, "subject")
                templating.check_syntax(
                    template.body, "body", html=template.channel_type == "email", channel_type=template.channel_type
                )
            except InvalidInput as error:
                raise ValidationError(
                    _("Template “%(name)s”: %(reason)s", name=template.name, reason=error.message)
                ) from None
            template._check_render_budget()

    def _check_render_budget(self):
        """Fill the template in once, for the preview contact or the author: one that takes too
        long or grows too big would do so at every send, so it cannot be saved. (Other errors may
        depend on the contact or the triggering record, and are left to the preview.)"""
        self.ensure_one()
        partner = self.preview_partner_id or self.env.user.partner_id
        try:
            self.env["gobysend.message"]._render_for(
                self.workspace_id, partner, self.channel_type, self.subject, self.body, name=self.name
            )
        except templating.TemplateTooCostly as error:
            raise ValidationError(str(error)) from None
        except templating.TemplateRenderError:
            return  # the preview shows it, for the contact it depends on

    @api.depends("subject", "body", "preview_partner_id", "channel_type")
    def _compute_preview(self):
        messages = self.env["gobysend.message"]
        for template in self:
            template.preview_subject = template.preview_body = False
            if not template.preview_partner_id:
                continue
            try:
                subject, body = messages._render_for(
                    template.workspace_id,
                    template.preview_partner_id,
                    template.channel_type,
                    template.subject,
                    template.body,
                    name=template.name,
                )
            except templating.TemplateRenderError as error:
                template.preview_body = _(
                    "This template cannot be filled in for this contact: %(reason)s", reason=error
                )
                continue
            template.preview_subject, template.preview_body = subject, body
