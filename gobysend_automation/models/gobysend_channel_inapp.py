from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

INAPP_DISPLAY_KINDS = [("banner", "Banner"), ("popup", "Pop-up")]
# What the in-app provider answers for a message it made available: the message's own id, so
# that a message sent through the embedded outbox (a channel in test mode) is never shown.
INAPP_PROVIDER_PREFIX = "inapp-"


# The in-app provider extends the channel in a file of its own, as the other providers do.
# pylint: disable=consider-merging-classes-inherited
class GobysendChannel(models.Model):
    """In-app messages: banners and pop-ups that the business's own app or mini app fetches
    from the tracking API (``GET /inapp``). "Sending" one makes it available there; nothing
    leaves Odoo, so it needs no credentials and costs no tokens."""

    _inherit = "gobysend.channel"

    provider = fields.Selection(
        selection_add=[("inapp", "In-app (the app fetches it)")], ondelete={"inapp": "set default"}
    )
    inapp_display_kind = fields.Selection(
        INAPP_DISPLAY_KINDS,
        string="Display",
        default="banner",
        help="How the app shows this channel's messages unless a message says otherwise.",
    )
    inapp_validity_days = fields.Integer(
        string="Shown For (Days)",
        default=30,
        help="Days a message stays available to the app after it is sent; 0 keeps it until the contact dismisses "
        "it. A message may set its own expiry.",
    )

    _sql_constraints = [
        (
            "inapp_validity_days_not_negative",
            "CHECK(inapp_validity_days >= 0)",
            "The days an in-app message is shown cannot be negative.",
        ),
    ]

    @api.constrains("provider", "channel_type", "token_cost")
    def _check_inapp(self):
        for channel in self:
            if (channel.channel_type == "inapp") != (channel.provider == "inapp"):
                raise ValidationError(
                    _("In-app channels, and only they, use the In-app provider: the app fetches their messages.")
                )
            if channel.channel_type == "inapp" and channel.token_cost:
                raise ValidationError(_("In-app messages cost no tokens: set the tokens per message to 0."))

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("channel_type") == "inapp":
                vals.update(self._inapp_defaults(vals))
        return super().create(vals_list)

    def write(self, vals):
        if vals.get("channel_type") == "inapp":
            vals = dict(vals, **self._inapp_defaults(vals))
        return super().write(vals)

    @api.model
    def _inapp_defaults(self, vals):
        """What an in-app channel's settings are unless given: its own provider, no cost, and no
        rate limit (making a message available costs nothing outside Odoo)."""
        defaults = {"provider": "inapp", "token_cost": 0.0, "rate_limit": 0}
        return {key: value for key, value in defaults.items() if key not in vals}

    @api.onchange("channel_type")
    def _onchange_channel_type_inapp(self):
        if self.channel_type == "inapp":
            self.update(self._inapp_defaults({}))
        elif self.provider == "inapp":
            self.provider = "outbox"

    def _get_supported_channel_types(self):
        if self.provider == "inapp":
            return ("inapp",)
        return super()._get_supported_channel_types()

    def _get_message_token_cost(self):
        """Tokens one message of this channel costs, set on the message when it is queued."""
        self.ensure_one()
        return 0.0 if self.channel_type == "inapp" else super()._get_message_token_cost()

    def _has_idempotent_sends(self):
        # Making a message available twice shows it once: a message interrupted in between is
        # simply made available again.
        if self.provider == "inapp":
            return True
        return super()._has_idempotent_sends()

    def _inapp_send(self, message):
        return f"{INAPP_PROVIDER_PREFIX}{message.id}"
