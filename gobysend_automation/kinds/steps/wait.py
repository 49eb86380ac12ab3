from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register, timing

_lt = LazyTranslate(__name__)


@register(STEPS)
class WaitStep(StepKind):
    """Hold the journey: for a duration, until a time of day in the contact's time zone, or
    until an allowed weekday."""

    key = "wait"
    label = _lt("Wait")
    icon = "fa-hourglass-half"
    sequence = 20
    fields = ("timing", "delay_amount", "delay_unit", "time_of_day", *timing.WEEKDAY_FIELDS)

    def validate(self, step):
        if step.timing == "now":
            raise ValidationError(
                step.env._("Step “%(step)s”: say how long to wait, or until when.", step=step.display_name)
            )

    def summary(self, step):
        if step.timing == "delay":
            units = dict(step._fields["delay_unit"]._description_selection(step.env))
            return f"{step.delay_amount} {units.get(step.delay_unit)}"
        if step.timing == "time_of_day":
            at = timing.hour_to_time(step.time_of_day)
            return f"{at:%H:%M}"
        return str(self.label)

    def run(self, batch, step, rows):
        outcomes = []
        for row in rows:
            if row.wait_until is None:
                until = timing.moment(step, batch.now, row.tz)
            else:
                until = row.wait_until
            outcomes.append(Outcome.done() if until <= batch.now else Outcome.wait(until))
        return outcomes
