from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)


@register(STEPS)
class ExitStep(StepKind):
    """End the journey here."""

    key = "exit"
    label = _lt("Exit")
    icon = "fa-sign-out"
    sequence = 90
    terminal = True

    def run(self, batch, step, rows):
        return [Outcome.exit(step.name if step.name and step.name != str(self.label) else None) for _row in rows]
