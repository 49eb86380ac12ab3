from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from .. import TRIGGERS, TriggerKind, register

_lt = LazyTranslate(__name__)


@register(TRIGGERS)
class SegmentTrigger(TriggerKind):
    """A contact enters or leaves a segment. Started from the segment's membership rows (each
    row one "entered" and, once closed, one "left" transition) as the segment's evaluation
    writes them (``gobysend.segment._evaluate_membership``): a transition starts one journey."""

    key = "segment"
    label = _lt("Segment entered / left")
    icon = "fa-users"
    sequence = 70
    fields = ("trigger_segment_id", "segment_transition")
    help = _lt(
        "Starts a journey when a contact enters (or leaves) the segment. Segments follow changes of contacts, "
        "their activity and the records their contact filter names (a confirmed order, a won opportunity) within "
        "about a minute. Contacts who were already members when the campaign was launched do not start it."
    )

    def validate(self, campaign):
        if not campaign.trigger_segment_id:
            raise ValidationError(
                campaign.env._("Campaign “%(name)s”: choose the segment whose members start it.", name=campaign.name)
            )
        if not campaign.segment_transition:
            raise ValidationError(
                campaign.env._(
                    "Campaign “%(name)s”: say whether entering or leaving the segment starts it.", name=campaign.name
                )
            )
