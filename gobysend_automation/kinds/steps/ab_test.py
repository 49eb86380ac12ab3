import collections
import hashlib

from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from ... import templating
from ...exceptions import InvalidInput
from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)


def in_test_share(journey_id, step):
    """Whether the journey is in the step's test share: a hash of the journey and the step, so
    the same journey is always in or out, however often the step is asked."""
    digest = hashlib.blake2b(f"{journey_id}:{step.id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100 < step.ab_test_share


@register(STEPS)
class ABTestStep(StepKind):
    """Sends variants of a message to a test share of the journeys, evenly, and holds the
    others until the decision time; then the variant with the best open, click or conversion
    rate wins, once, and the held journeys (and every later one) get it."""

    key = "ab_test"
    label = _lt("A/B test of messages")
    icon = "fa-flask"
    sequence = 45
    sends = True
    fields = ("channel_id", "variant_ids", "ab_test_share", "ab_metric", "ab_decision_hours")

    def validate(self, step):
        env = step.env
        if not step.channel_id:
            raise ValidationError(env._("Step “%(step)s”: choose the channel to send on.", step=step.display_name))
        if step.channel_id.workspace_id != step.campaign_id.workspace_id:
            raise ValidationError(
                env._(
                    "Step “%(step)s”: channel “%(channel)s” belongs to another workspace.",
                    step=step.display_name,
                    channel=step.channel_id.display_name,
                )
            )
        if len(step.variant_ids) < 2:
            raise ValidationError(
                env._("Step “%(step)s”: an A/B test needs at least two variants.", step=step.display_name)
            )
        if not 1 <= step.ab_test_share <= 99:
            raise ValidationError(
                env._("Step “%(step)s”: the test share must be a percentage between 1 and 99.", step=step.display_name)
            )
        if not step.ab_metric:
            raise ValidationError(
                env._(
                    "Step “%(step)s”: choose how the winner is decided (open rate, click rate or conversion).",
                    step=step.display_name,
                )
            )
        if (
            step.ab_metric == "conversion"
            and not step.campaign_id.goal_event_name
            and "goal" not in step.campaign_id.step_ids.mapped("kind")
        ):
            raise ValidationError(
                env._(
                    "Step “%(step)s”: a winner by conversion needs a goal: the campaign's goal event or a Goal step.",
                    step=step.display_name,
                )
            )
        if step.ab_decision_hours < 1:
            raise ValidationError(
                env._("Step “%(step)s”: decide the winner after one hour or more.", step=step.display_name)
            )
        channel_type = step.channel_id.channel_type
        for variant in step.variant_ids:
            template = variant.template_id
            if template and template.workspace_id != step.campaign_id.workspace_id:
                raise ValidationError(
                    env._(
                        "Step “%(step)s”, variant %(variant)s: its template belongs to another workspace.",
                        step=step.display_name,
                        variant=variant.name,
                    )
                )
            if template and template.channel_type != channel_type:
                raise ValidationError(
                    env._(
                        "Step “%(step)s”, variant %(variant)s: template “%(template)s” is not a template for "
                        "the channel “%(channel)s”.",
                        step=step.display_name,
                        variant=variant.name,
                        template=template.name,
                        channel=step.channel_id.display_name,
                    )
                )
            subject, body = variant._message_templates()
            if not body:
                raise ValidationError(
                    env._(
                        "Step “%(step)s”, variant %(variant)s: write the message or choose a template.",
                        step=step.display_name,
                        variant=variant.name,
                    )
                )
            try:
                templating.check_syntax(subject, "subject")
                templating.check_syntax(body, "body", html=channel_type == "email", channel_type=channel_type)
            except InvalidInput as error:
                raise ValidationError(
                    env._(
                        "Step “%(step)s”, variant %(variant)s: %(reason)s",
                        step=step.display_name,
                        variant=variant.name,
                        reason=error.message,
                    )
                ) from None

    def summary(self, step):
        names = "/".join(step.variant_ids.mapped("name"))
        if step.ab_winner_id:
            return step.env._("%(variants)s: winner %(winner)s", variants=names, winner=step.ab_winner_id.name)
        return step.env._(
            "%(variants)s to %(share)s%%, winner after %(hours)s h",
            variants=names,
            share=step.ab_test_share,
            hours=step.ab_decision_hours,
        )

    def run(self, batch, step, rows):
        variants = step.variant_ids.sorted(lambda variant: (variant.sequence, variant.id))
        step._ab_start(batch.now)
        decide_at = step._ab_decision_time()
        winner = step.ab_winner_id
        if not winner and batch.now >= decide_at:
            winner = step._ab_decide(batch.now)
        outcomes = {}
        groups = collections.defaultdict(list)
        if winner:
            groups[winner] = list(rows)
        else:
            filled = self._variant_counts(step)
            for row in rows:
                if in_test_share(row.id, step):
                    # Evenly: the variant with the fewest messages so far, the first on a tie.
                    variant = min(variants, key=lambda variant: filled.get(variant.id, 0))
                    filled[variant.id] = filled.get(variant.id, 0) + 1
                    groups[variant].append(row)
                else:
                    outcomes[row.id] = Outcome.wait(decide_at)
        for variant, group in groups.items():
            subject, body = variant._message_templates()
            extra = {"inapp": step._inapp_settings()} if step.channel_id.channel_type == "inapp" else None
            messages = batch.enqueue_messages(step, group, subject, body, extra_context=extra, variant_id=variant.id)
            for row in group:
                outcomes[row.id] = Outcome.done(message_id=messages.get(row.id))
        return [outcomes[row.id] for row in rows]

    def _variant_counts(self, step):
        step.env.cr.execute(
            """
            SELECT campaign_variant_id, count(*) FROM gobysend_message
             WHERE campaign_step_id = %s AND campaign_variant_id IS NOT NULL GROUP BY campaign_variant_id
            """,
            [step.id],
        )
        return dict(step.env.cr.fetchall())
