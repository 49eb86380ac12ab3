from odoo import fields, models


class GobysendMessage(models.Model):
    _inherit = "gobysend.message"

    # Set when the message was queued by an A/B test step: the variant it carries, whose
    # figures decide the test's winner.
    campaign_variant_id = fields.Many2one(
        "gobysend.campaign.step.variant",
        string="A/B Variant",
        readonly=True,
        index="btree_not_null",
        ondelete="set null",
    )
