from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from .. import TRIGGERS, TriggerKind, register

_lt = LazyTranslate(__name__)

# Which engagement campaigns a receipt of a message starts: a click is an open too (an SMS
# is only ever known to be opened by its link being clicked).
KINDS_BY_RECEIPT = {"opened": ("opened",), "clicked": ("opened", "clicked"), "bounced": ("bounced",)}


@register(TRIGGERS)
class EngagementTrigger(TriggerKind):
    """A contact engages with a message of another campaign: opens it, clicks it, bounces, or
    has not opened it within some hours. Opens, clicks and bounces start journeys as their
    receipts are recorded (``gobysend.message._apply_receipt``); messages left unopened are
    found every minute (``gobysend.campaign._cron_start_unopened_journeys``). Each message
    starts one journey."""

    key = "engagement"
    label = _lt("Engagement with a campaign")
    icon = "fa-envelope-open-o"
    sequence = 80
    fields = ("engagement_campaign_id", "engagement_step_id", "engagement_kind", "engagement_hours")
    help = _lt(
        "Starts a journey when a contact opens, clicks or bounces a message of the other campaign (a click counts "
        "as an open), or has not opened nor clicked it within the given hours after it was sent. Each message "
        "starts one journey; choose a step of the other campaign to follow up only the message of that step. "
        "“Not opened within” also follows up messages sent before this campaign was launched."
    )

    def validate(self, campaign):
        other = campaign.engagement_campaign_id
        if not other:
            raise ValidationError(
                campaign.env._("Campaign “%(name)s”: choose the campaign whose messages start it.", name=campaign.name)
            )
        if other == campaign:
            raise ValidationError(
                campaign.env._(
                    "Campaign “%(name)s” cannot be started by engagement with its own messages: choose another "
                    "campaign.",
                    name=campaign.name,
                )
            )
        step = campaign.engagement_step_id
        if step and (step.campaign_id != other or step.kind != "send"):
            raise ValidationError(
                campaign.env._(
                    "Campaign “%(name)s”: “Message of Step” must be a step of “%(other)s” that sends a message.",
                    name=campaign.name,
                    other=other.name,
                )
            )
        if campaign.engagement_kind == "not_opened" and campaign.engagement_hours < 1:
            raise ValidationError(
                campaign.env._("Campaign “%(name)s”: “Within (hours)” must be at least 1 hour.", name=campaign.name)
            )
