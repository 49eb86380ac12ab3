from odoo import _, api, fields, models
from odoo.exceptions import UserError

VALUE_FIELDS = {
    "string": "value_string",
    "number": "value_number",
    "boolean": "value_boolean",
    "date": "value_date",
    "datetime": "value_datetime",
}


class GobysendAttributeValue(models.Model):
    """One contact's value for one attribute, in a column of the attribute's type so that
    segments can compare it with the database's own operators."""

    _name = "gobysend.attribute.value"
    _description = "Gobysend Attribute Value"
    _order = "attribute_id, id"
    _rec_name = "attribute_id"
    # A value keeps when it last changed, not who created or changed it: values are written
    # in bulk (the API, imports, workflows), a row per contact and attribute, and the two user
    # columns cost each of them two foreign-key checks.
    _log_access = False

    # Looked up by the unique index on (attribute, contact), which serves a search by attribute
    # as well: an index of its own would only cost every value written.
    attribute_id = fields.Many2one("gobysend.attribute", required=True, ondelete="cascade")
    # The attribute's, read through it rather than stored: a value goes with its attribute
    # (cascade), so a copy could only ever hold the same, and it cost every value written a
    # foreign-key check and an index entry (an import writes one value per contact and
    # attribute). Record rules and searches on it go through the attribute.
    workspace_id = fields.Many2one(related="attribute_id.workspace_id")
    partner_id = fields.Many2one("res.partner", string="Contact", required=True, ondelete="cascade", index=True)
    key = fields.Char(related="attribute_id.key")
    value_type = fields.Selection(related="attribute_id.value_type")
    value_string = fields.Char()
    value_number = fields.Float()
    value_boolean = fields.Boolean()
    value_date = fields.Date()
    value_datetime = fields.Datetime()
    value_display = fields.Char(string="Value", compute="_compute_value_display")
    # Kept by hand, as Odoo keeps it on models with their access log.
    write_date = fields.Datetime(string="Updated On", readonly=True, default=lambda self: self.env.cr.now())

    _sql_constraints = [
        ("partner_attribute_uniq", "unique(attribute_id, partner_id)", "A contact holds one value per attribute.")
    ]

    @api.model_create_multi
    def create(self, vals_list):
        values = super().create(vals_list)
        self.env["gobysend.segment"]._mark_dirty(values.partner_id.ids, "attribute")
        return values

    def write(self, vals):
        if "attribute_id" in vals:
            target = self.env["gobysend.attribute"].sudo().browse(vals["attribute_id"]).workspace_id
            if any(value.workspace_id != target for value in self.sudo()):
                raise UserError(_("An attribute value cannot move to another workspace's attribute."))
        result = super().write({"write_date": self.env.cr.now(), **vals})
        self.env["gobysend.segment"]._mark_dirty(self.partner_id.ids, "attribute")
        return result

    def unlink(self):
        self.env["gobysend.segment"]._mark_dirty(self.partner_id.ids, "attribute")
        return super().unlink()

    @api.depends("value_type", *VALUE_FIELDS.values())
    def _compute_value_display(self):
        for value in self:
            stored = value[VALUE_FIELDS.get(value.value_type, "value_string")]
            if value.value_type == "number" and float(stored).is_integer():
                stored = int(stored)
            value.value_display = "" if stored is False and value.value_type != "boolean" else str(stored)
