from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)


@register(STEPS)
class TagStep(StepKind):
    """Add a tag to the contact, or remove it: the contact tags sales staff see on the form."""

    key = "tag"
    label = _lt("Add or remove a tag")
    icon = "fa-tag"
    sequence = 50
    fields = ("tag_action", "tag_id")

    def validate(self, step):
        if not step.tag_id:
            raise ValidationError(step.env._("Step “%(step)s”: choose the tag.", step=step.display_name))

    def summary(self, step):
        actions = dict(step._fields["tag_action"]._description_selection(step.env))
        return f"{actions.get(step.tag_action, '')} {step.tag_id.display_name or ''}"

    def run(self, batch, step, rows):
        # One write for the whole group, through the ORM: segments that watch tags hear of it.
        partners = batch.env["res.partner"].sudo().browse({row.partner_id for row in rows})  # sudo: the engine's own
        partners.write({"category_id": [(4 if step.tag_action == "add" else 3, step.tag_id.id)]})
        return [Outcome.done() for _row in rows]
