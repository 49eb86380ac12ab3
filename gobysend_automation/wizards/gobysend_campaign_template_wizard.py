from odoo import _, api, fields, models
from odoo.exceptions import UserError

from .. import campaign_templates, kinds


def _template_selection(model):
    return [(tmpl.key, tmpl.name) for tmpl in sorted(campaign_templates.TEMPLATES.values(), key=lambda t: t.sequence)]


class GobysendCampaignTemplateWizard(models.TransientModel):
    """One card of the template gallery, then the dialog that creates its campaign.

    The gallery (``action_open_gallery``) holds one row per template offered in this database;
    choosing one opens it as a dialog asking for the workspace and the messages' language, and
    *Create* makes the draft campaign (``campaign_templates.create_campaign``) and opens it.
    """

    _name = "gobysend.campaign.template.wizard"
    _description = "Gobysend Campaign Template"
    _order = "sequence, id"

    template_key = fields.Selection(_template_selection, string="Template", required=True)
    sequence = fields.Integer()
    name = fields.Char(compute="_compute_template")
    description = fields.Text(compute="_compute_template")
    icon = fields.Char(compute="_compute_template")
    channels_needed = fields.Char(compute="_compute_template", string="Channels Needed")
    trigger_label = fields.Char(compute="_compute_template", string="Trigger")
    trigger_missing = fields.Boolean(compute="_compute_template")
    uses_segment_choice = fields.Boolean(compute="_compute_template")
    workspace_id = fields.Many2one(
        "gobysend.workspace", default=lambda self: self.env["gobysend.workspace"].search([], limit=1)
    )
    message_lang = fields.Selection(
        campaign_templates.LANGUAGES,
        string="Language of the Messages",
        default=lambda self: "vi" if (self.env.lang or "").startswith("vi") else "en",
        help="The send steps carry their message in this language; the other language is saved as a second "
        "message template beside it.",
    )
    segment_id = fields.Many2one(
        "gobysend.segment",
        string="Segment",
        domain="[('workspace_id', '=', workspace_id)]",
        help="The segment whose new members start the campaign; empty: the template's own, created when missing.",
    )
    missing_channels = fields.Char(compute="_compute_missing_channels")

    @api.depends("template_key")
    def _compute_template(self):
        labels = dict(self.env["gobysend.channel"]._fields["channel_type"]._description_selection(self.env))
        for wizard in self:
            tmpl = campaign_templates.TEMPLATES.get(wizard.template_key)
            trigger = kinds.TRIGGERS.get(tmpl.trigger_kind) if tmpl else None
            wizard.name = str(tmpl.name) if tmpl else False
            wizard.description = str(tmpl.description) if tmpl else False
            wizard.icon = tmpl.icon if tmpl else False
            wizard.channels_needed = ", ".join(labels.get(t, t) for t in tmpl.channel_types) if tmpl else False
            wizard.trigger_label = str(trigger.label) if trigger else False
            wizard.trigger_missing = bool(tmpl) and not trigger
            wizard.uses_segment_choice = bool(tmpl) and tmpl.segment_choice

    @api.depends("template_key", "workspace_id")
    def _compute_missing_channels(self):
        Channel = self.env["gobysend.channel"]
        labels = dict(Channel._fields["channel_type"]._description_selection(self.env))
        for wizard in self:
            tmpl = campaign_templates.TEMPLATES.get(wizard.template_key)
            missing = []
            if tmpl and wizard.workspace_id:
                for channel_type in tmpl.channel_types:
                    if not Channel.search_count(
                        [
                            ("workspace_id", "=", wizard.workspace_id.id),
                            ("channel_type", "=", channel_type),
                            ("state", "in", ("enabled", "test")),
                        ],
                        limit=1,
                    ):
                        missing.append(labels.get(channel_type, channel_type))
            wizard.missing_channels = ", ".join(missing) or False

    @api.model
    def action_open_gallery(self):
        """The gallery: one card per template this database offers."""
        cards = self.create(
            [
                {"template_key": tmpl.key, "sequence": tmpl.sequence}
                for tmpl in campaign_templates.available_templates(self.env)
            ]
        )
        return {
            "type": "ir.actions.act_window",
            "name": _("New Campaign from a Template"),
            "res_model": self._name,
            "view_mode": "kanban",
            "views": [(self.env.ref("gobysend_automation.gobysend_campaign_template_wizard_view_kanban").id, "kanban")],
            "domain": [("id", "in", cards.ids)],
            "context": {"create": False},
        }

    def action_choose(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.name,
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "views": [(self.env.ref("gobysend_automation.gobysend_campaign_template_wizard_view_form").id, "form")],
            "target": "new",
        }

    def action_create(self):
        self.ensure_one()
        if not self.workspace_id:
            raise UserError(_("Choose the workspace the campaign belongs to."))
        if self.segment_id and self.segment_id.workspace_id != self.workspace_id:
            raise UserError(_("The segment belongs to another workspace."))
        campaign = campaign_templates.create_campaign(
            self.env, self.template_key, self.workspace_id, self.message_lang or "en", segment=self.segment_id
        )
        return {
            "type": "ir.actions.act_window",
            "name": campaign.display_name,
            "res_model": "gobysend.campaign",
            "res_id": campaign.id,
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "main",
        }
