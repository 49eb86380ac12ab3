from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)


@register(STEPS)
class ListStep(StepKind):
    """Copy the contact to a list (a static segment), or move it there from another list."""

    key = "list"
    label = _lt("Copy or move to a list")
    icon = "fa-list-ul"
    sequence = 57
    fields = ("list_action", "list_id", "list_source_id")

    def validate(self, step):
        workspace = step.campaign_id.workspace_id
        target = step.list_id
        if not target or target.segment_type != "static" or target.workspace_id != workspace:
            raise ValidationError(
                step.env._("Step “%(step)s”: choose a list of the campaign's workspace.", step=step.display_name)
            )
        if step.list_action == "move":
            source = step.list_source_id
            if not source or source.segment_type != "static" or source.workspace_id != workspace:
                raise ValidationError(
                    step.env._(
                        "Step “%(step)s”: choose the list of the campaign's workspace the contact leaves.",
                        step=step.display_name,
                    )
                )
            if source == target:
                raise ValidationError(
                    step.env._(
                        "Step “%(step)s”: the contact cannot move to the list it leaves.", step=step.display_name
                    )
                )

    def summary(self, step):
        if step.list_action == "move":
            return step.env._(
                "%(source)s → %(target)s",
                source=step.list_source_id.display_name or "?",
                target=step.list_id.display_name or "?",
            )
        return step.env._("+ %(target)s", target=step.list_id.display_name or "?")

    def run(self, batch, step, rows):
        target = step.list_id
        source = step.list_source_id if step.list_action == "move" else None
        # Lists changed (or made segments of conditions) since the step was saved stop the
        # journeys with the reason rather than putting contacts elsewhere.
        for segment in (target, source):
            if segment is not None and (not segment.active or segment.segment_type != "static"):
                reason = step.env._(
                    "“%(segment)s” is no longer an active list.", segment=segment.display_name or step.display_name
                )
                return [Outcome.fail(reason) for _row in rows]
        partner_ids = sorted({row.partner_id for row in rows})
        # sudo: the engine's own; the lists were checked to be of the campaign's workspace.
        target.sudo()._change_list_members(add=partner_ids, now=batch.now)
        if source is not None:
            source.sudo()._change_list_members(remove=partner_ids, now=batch.now)
        return [Outcome.done() for _row in rows]
