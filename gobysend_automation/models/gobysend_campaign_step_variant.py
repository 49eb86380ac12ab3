import string

from odoo import api, fields, models

from .. import kinds
from .gobysend_campaign import rates


class GobysendCampaignStepVariant(models.Model):
    """One message of an A/B test step: a subject and body (or a template) on the step's
    channel. The step sends the variants to a test share of its journeys, then the winner to
    the others (see ``kinds.steps.ab_test``)."""

    _name = "gobysend.campaign.step.variant"
    _description = "Gobysend A/B Test Variant"
    _order = "step_id, sequence, id"

    step_id = fields.Many2one("gobysend.campaign.step", required=True, ondelete="cascade", index=True)
    workspace_id = fields.Many2one(related="step_id.workspace_id", store=True, index=True)
    sequence = fields.Integer(default=10)
    name = fields.Char(help="A, B, C… when left empty.")
    template_id = fields.Many2one(
        "gobysend.message.template", ondelete="set null", domain="[('workspace_id', '=', workspace_id)]"
    )
    subject = fields.Char(help="Jinja2, like a send step's subject.")
    body = fields.Text(help="Jinja2, like a send step's body.")
    is_winner = fields.Boolean(compute="_compute_figures", string="Winner")
    sent_count = fields.Integer(compute="_compute_figures", string="Sent")
    opened_count = fields.Integer(compute="_compute_figures", string="Opened")
    clicked_count = fields.Integer(compute="_compute_figures", string="Clicked")
    converted_count = fields.Integer(compute="_compute_figures", string="Converted")
    open_rate = fields.Float(compute="_compute_figures")
    click_rate = fields.Float(compute="_compute_figures")
    conversion_rate = fields.Float(compute="_compute_figures")

    @api.model_create_multi
    def create(self, vals_list):
        variants = super().create(vals_list)
        for step in variants.step_id:
            for index, variant in enumerate(step.variant_ids.sorted(lambda v: (v.sequence, v.id))):
                if not variant.name:
                    variant.name = string.ascii_uppercase[index % 26]
        return variants

    @api.constrains("step_id", "template_id", "subject", "body")
    def _check_variant(self):
        for step in self.step_id.filtered(lambda step: step.kind == "ab_test"):
            kinds.STEPS["ab_test"].validate(step)

    def unlink(self):
        steps = self.step_id
        result = super().unlink()
        # An A/B test left with one variant is no test: refuse it, like the step form does.
        for step in steps.exists().filtered(lambda step: step.kind == "ab_test"):
            kinds.STEPS["ab_test"].validate(step)
        return result

    @api.onchange("template_id")
    def _onchange_template_id(self):
        if self.template_id:
            self.subject = self.template_id.subject
            self.body = self.template_id.body

    def _message_templates(self):
        """The subject and body the variant's messages are rendered from."""
        self.ensure_one()
        if self.body:
            return self.subject, self.body
        return self.template_id.subject, self.template_id.body

    def _compute_figures(self):
        figures = self.step_id._ab_figures()
        for variant in self:
            counts = figures.get(variant.id, {})
            variant.sent_count = counts.get("sent", 0)
            variant.opened_count = counts.get("opened", 0)
            variant.clicked_count = counts.get("clicked", 0)
            variant.converted_count = counts.get("converted", 0)
            variant.open_rate, variant.click_rate = rates(
                variant.sent_count, variant.opened_count, variant.clicked_count
            )
            variant.conversion_rate = variant.converted_count / variant.sent_count if variant.sent_count else 0.0
            variant.is_winner = bool(variant.id) and variant.step_id.ab_winner_id == variant
