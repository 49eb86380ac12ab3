import re

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Standard keys write the partner's own fields instead of an attribute value.
STANDARD_KEYS = {
    "email": "email",
    "phone": "phone",
    "name": "name",
    "birthday": "gobysend_birthday",
    "city": "city",
    "country_code": "country_id",
    "language": "lang",
}
ATTRIBUTE_TYPE_SELECTION = [
    ("string", "Text"),
    ("number", "Number"),
    ("boolean", "Yes/No"),
    ("date", "Date"),
    ("datetime", "Date & Time"),
]


class GobysendAttribute(models.Model):
    """A typed key that contacts of a workspace can carry a value for."""

    _name = "gobysend.attribute"
    _inherit = ["gobysend.workspace.bound"]
    _description = "Gobysend Attribute"
    _order = "workspace_id, key"
    _rec_name = "label"

    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", index=True)
    key = fields.Char(required=True, help="Lowercase letters, digits and underscores, as sent through the API.")
    label = fields.Char(help="Defaults to the key, made readable.")
    value_type = fields.Selection(ATTRIBUTE_TYPE_SELECTION, string="Type", required=True, default="string")
    auto_created = fields.Boolean(readonly=True, help="Created on first sight with an inferred type.")
    value_count = fields.Integer(compute="_compute_value_count", string="Contacts with a value")

    _sql_constraints = [("key_uniq", "unique(workspace_id, key)", "Attribute keys must be unique within a workspace.")]

    def _compute_value_count(self):
        counts = dict(
            self.env["gobysend.attribute.value"]._read_group(
                [("attribute_id", "in", self.ids)], ["attribute_id"], ["__count"]
            )
        )
        for attribute in self:
            attribute.value_count = counts.get(attribute, 0)

    @api.constrains("key")
    def _check_key(self):
        for attribute in self:
            if not KEY_RE.match(attribute.key or ""):
                raise ValidationError(
                    _(
                        "“%(key)s” is not a valid attribute key: use lowercase letters, digits and underscores, "
                        "starting with a letter.",
                        key=attribute.key,
                    )
                )
            if attribute.key in STANDARD_KEYS:
                raise ValidationError(
                    _(
                        "“%(key)s” is a standard key stored on the contact itself; it needs no attribute.",
                        key=attribute.key,
                    )
                )

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if not vals.get("label") and vals.get("key"):
                vals["label"] = vals["key"].replace("_", " ").capitalize()
        return super().create(vals_list)

    def write(self, vals):
        if "value_type" in vals:
            used = self.filtered(lambda a: a.value_type != vals["value_type"] and a.value_count)
            if used:
                raise ValidationError(
                    _(
                        "The type of attribute “%(key)s” cannot change while contacts hold values for it.",
                        key=used[0].key,
                    )
                )
        return super().write(vals)
