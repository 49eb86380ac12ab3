from odoo.tools.translate import LazyTranslate

from .. import TRIGGERS, TriggerKind, register

_lt = LazyTranslate(__name__)


@register(TRIGGERS)
class ManualTrigger(TriggerKind):
    """Launched by a manager, now or at a scheduled time, over segments, tags and/or a contact
    filter; done when its journeys are."""

    key = "manual"
    label = _lt("Manual")
    icon = "fa-hand-pointer-o"
    sequence = 20
    uses_audience = True
    ends_by_itself = True
    fields = ("segment_ids", "tag_ids", "partner_domain", "scheduled_at")
    help = _lt(
        "Launched by you, at once or at the scheduled time, for the workspace's contacts in the chosen segments or "
        "with the chosen tags (all of them when none is chosen) that meet the contact filter. Contacts can also be "
        "added by sales staff with “Add to campaign”. The campaign is done when all its journeys are."
    )

    def launch(self, campaign):
        campaign._begin_fan_out()
