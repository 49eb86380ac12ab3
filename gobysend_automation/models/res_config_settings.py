from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from ..kinds.steps.partner_field import ALLOWED_PARAMETER, DEFAULT_ALLOWED, WRITABLE_TYPES, writable_field


class ResConfigSettings(models.TransientModel):
    """The Gobysend settings page: only administrators change it (settings are theirs)."""

    _inherit = "res.config.settings"

    gobysend_partner_field_ids = fields.Many2many(
        "ir.model.fields",
        string="Contact Fields Workflows May Update",
        compute="_compute_gobysend_partner_field_ids",
        inverse="_inverse_gobysend_partner_field_ids",
        domain=[("model", "=", "res.partner"), ("store", "=", True), ("ttype", "in", list(WRITABLE_TYPES))],
        help="The contact fields an “Update a contact field” workflow step may write. A workspace only ever "
        "changes the contacts it owns.",
    )
    gobysend_partner_fields = fields.Char(
        config_parameter=ALLOWED_PARAMETER, default=DEFAULT_ALLOWED, string="Contact Fields (names)"
    )

    @api.depends("gobysend_partner_fields")
    def _compute_gobysend_partner_field_ids(self):
        Fields = self.env["ir.model.fields"]
        for settings in self:
            names = [name.strip() for name in (settings.gobysend_partner_fields or "").split(",") if name.strip()]
            settings.gobysend_partner_field_ids = Fields.search([("model", "=", "res.partner"), ("name", "in", names)])

    def _inverse_gobysend_partner_field_ids(self):
        for settings in self:
            refused = [
                field.field_description
                for field in settings.gobysend_partner_field_ids
                if not writable_field(self.env, field.name)
            ]
            if refused:
                raise ValidationError(
                    _(
                        "Workflows cannot update these contact fields: %(fields)s. They are computed, not simple "
                        "values, or decide who a contact is (name, email, phone, company, salesperson).",
                        fields=", ".join(refused),
                    )
                )
            # An empty setting would delete the parameter and bring the default list back:
            # "none" (no field's name) says that no field may be updated.
            settings.gobysend_partner_fields = ",".join(settings.gobysend_partner_field_ids.mapped("name")) or "none"
