from odoo import fields, models


class GobysendMessage(models.Model):
    _inherit = "gobysend.message"

    push_deliveries = fields.Json(
        readonly=True,
        copy=False,
        help="The devices that already have this push message, with Firebase's message name: an attempt after a "
        "failure goes only to the others.",
    )

    def _record_send_results(self, results, *args, **kwargs):
        # A push that reached some devices and is retried for the others keeps, with its
        # outcome and in the same transaction, which devices must not get it again.
        for message in self:
            delivered = getattr(results.get(message.id), "delivered", None)
            if delivered:
                already = message.push_deliveries or {}
                message.push_deliveries = {**already, **{str(device): name for device, name in delivered.items()}}
        return super()._record_send_results(results, *args, **kwargs)
