from odoo import _, api, models
from odoo.exceptions import ValidationError

from .. import transport


class IrConfigParameter(models.Model):
    _inherit = "ir.config_parameter"

    @api.constrains("key", "value")
    def _check_gobysend_outbound_allowed_networks(self):
        for parameter in self.filtered(lambda p: p.key == transport.ALLOWED_NETWORKS_PARAMETER):
            try:
                transport.parse_allowed_networks(parameter.value or "", strict=True)
            except ValueError as error:
                raise ValidationError(
                    _(
                        "%(entry)r in %(parameter)s is not a network: list networks as CIDRs separated by commas, "
                        "e.g. 10.0.0.0/8, 192.168.1.20/32, fd00::/8.",
                        entry=error.args[0],
                        parameter=transport.ALLOWED_NETWORKS_PARAMETER,
                    )
                ) from None
