from odoo import fields
from odoo.exceptions import ValidationError
from odoo.tools import SQL
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register
from ..triggers.event import event_filter_sql
from . import condition  # noqa: F401  (the goal reuses the condition step's tests)

_lt = LazyTranslate(__name__)


@register(STEPS)
class GoalStep(StepKind):
    """The campaign's goal, placed in the workflow: an event the contact performs, or a condition
    on the contact becoming true (an attribute, contact fields, a segment, a tag). A journey that
    reaches the goal wherever it stands jumps here, counts as converted and goes on with the steps
    after this one (a thank-you message). The goal is checked each time a journey advances, and
    at once when the goal's event is stored (``convert_on_events``).

    A goal that is a condition is also swept every minute for the journeys waiting elsewhere
    (``sweep_condition_goals``): a tag added while a journey waits a week converts it then.

    A journey that comes to this step in sequence without having reached the goal exits here:
    what follows the goal is for those who converted."""

    key = "goal"
    label = _lt("Goal")
    icon = "fa-trophy"
    sequence = 85
    # The form shows the goal's own group (the condition and event fields, by goal type).
    fields = ("goal_type",)

    def validate(self, step):
        env = step.env
        goals = step.campaign_id.step_ids.filtered(lambda other: other.kind == "goal")
        if len(goals) > 1:
            raise ValidationError(
                env._("Campaign “%(name)s” has more than one goal step: keep one.", name=step.campaign_id.name)
            )
        if step.goal_type == "event":
            if not (step.event_name or "").strip():
                raise ValidationError(
                    env._("Step “%(step)s”: name the event that reaches the goal.", step=step.display_name)
                )
            event_filter_sql(env, step.event_filter, SQL.identifier("e"))
            return
        if step.condition_kind == "engagement":
            raise ValidationError(
                env._(
                    "Step “%(step)s”: a goal is an event or a condition on the contact (an attribute, contact "
                    "fields, a segment or a tag), not engagement with a message.",
                    step=step.display_name,
                )
            )
        STEPS["condition"].validate(step)

    def summary(self, step):
        if step.goal_type == "event":
            return f"{step.event_name or ''} {step.event_filter or ''}".strip()
        return STEPS["condition"].summary(step)

    def run(self, batch, step, rows):
        reached = reached_goal(batch.env, step, [row.id for row in rows]) | (batch.converted & {row.id for row in rows})
        batch.converted |= reached
        outcomes = []
        for row in rows:
            if row.id in reached:
                outcomes.append(Outcome.done(reason=batch.env._("Reached the goal.")))
            else:
                outcomes.append(Outcome.exit(batch.env._("Came to the goal step without reaching the goal.")))
        return outcomes


def goal_test(env, step):
    """The goal of ``step`` as an SQL test on the journey ``j``: the event performed since the
    journey entered, or the contact meeting the condition now (the condition step's tests)."""
    if step.goal_type == "event":
        return SQL(
            """EXISTS (SELECT 1 FROM gobysend_event e
                        WHERE e.workspace_id = j.workspace_id AND e.partner_id = j.partner_id
                          AND e.name = %s AND e.timestamp >= j.entered_at AND %s)""",
            (step.event_name or "").strip(),
            event_filter_sql(env, step.event_filter, SQL.identifier("e")),
        )
    if step.condition_kind == "contact":
        # The contact filter with the rights of whoever set the campaign's filters, as the
        # condition step evaluates it: a subquery, whatever the number of journeys.
        campaign = step.campaign_id
        Partner = campaign._contacts_model()
        if not Partner.env.uid:
            return SQL("FALSE")
        query = Partner._search(campaign._get_contact_filter(text=step.partner_domain))
        return SQL("j.partner_id IN (%s)", query.select(SQL.identifier(query.table, "id")))
    return STEPS["condition"]._test(step)


def reached_goal(env, step, journey_ids):
    """The journeys among ``journey_ids`` already counted as converted, or reaching the goal of
    ``step`` now: one query."""
    if not journey_ids:
        return set()
    env.cr.execute(
        SQL(
            "SELECT j.id FROM gobysend_journey j WHERE j.id = ANY(%s) AND (j.converted IS TRUE OR %s)",
            list(journey_ids),
            goal_test(env, step),
        )
    )
    return {row[0] for row in env.cr.fetchall()}


def convert_on_events(env, workspace_id, partner_ids, names, now=None):
    """Journeys whose contact just performed their campaign's goal event: called by the ingest once
    events are stored. Journeys of a campaign with a goal step jump to it (the engine runs it at
    once); those of a campaign with only a goal event leave, converted. At most two statements
    whatever the number of events and journeys, and none unless a running campaign of the
    workspace has one of these events as its goal (``_get_goal_events``, cached)."""
    goals = [goal for goal in env["gobysend.campaign"]._get_goal_events(workspace_id) if goal[2] in set(names)]
    if not partner_ids or not goals:
        return 0
    now = now or fields.Datetime.now()
    env.flush_all()
    jumps = [goal for goal in goals if goal[1]]
    converted = 0
    if jumps:
        # One statement for every goal step concerned: each step's test is its event and filter.
        tests = SQL(" OR ").join(
            SQL(
                """(j.campaign_id = %s AND EXISTS (
                        SELECT 1 FROM gobysend_event e
                         WHERE e.workspace_id = j.workspace_id AND e.partner_id = j.partner_id AND e.name = %s
                           AND e.timestamp >= j.entered_at AND %s))""",
                campaign_id,
                name,
                event_filter_sql(env, event_filter, SQL.identifier("e")),
            )
            for campaign_id, _step_id, name, event_filter in jumps
        )
        env.cr.execute(
            SQL(
                """
                UPDATE gobysend_journey j
                   SET step_id = g.step_id, state = 'active', wake_at = %(now)s, wait_until = NULL,
                       converted = TRUE, converted_at = %(now)s
                  FROM unnest(%(campaigns)s::int[], %(steps)s::int[]) AS g (campaign_id, step_id)
                 WHERE j.campaign_id = g.campaign_id AND j.state IN ('active', 'waiting') AND j.converted IS NOT TRUE
                   AND j.workspace_id = %(workspace)s AND j.partner_id = ANY(%(partners)s) AND (%(tests)s)
                """,
                now=now,
                campaigns=[goal[0] for goal in jumps],
                steps=[goal[1] for goal in jumps],
                workspace=workspace_id,
                partners=list(partner_ids),
                tests=tests,
            )
        )
        converted += env.cr.rowcount
        if env.cr.rowcount:
            env["gobysend.journey"]._wake_advance()
    leaves = [goal[0] for goal in goals if not goal[1]]
    if leaves:
        env.cr.execute(
            """
            UPDATE gobysend_journey j
               SET state = 'exited', reason = %(reason)s, ended_at = %(now)s, wake_at = NULL, wait_until = NULL,
                   converted = TRUE, converted_at = %(now)s,
                   entry_key = CASE WHEN c.reentry = 'once_at_a_time' THEN NULL ELSE j.entry_key END
              FROM gobysend_campaign c
             WHERE c.id = j.campaign_id AND c.id = ANY(%(campaigns)s) AND j.state IN ('active', 'waiting')
               AND j.converted IS NOT TRUE AND j.workspace_id = %(workspace)s AND j.partner_id = ANY(%(partners)s)
               AND EXISTS (SELECT 1 FROM gobysend_event e
                            WHERE e.workspace_id = j.workspace_id AND e.partner_id = j.partner_id
                              AND e.name = c.goal_event_name AND e.timestamp >= j.entered_at)
            """,
            {
                "reason": env._("Reached the campaign's goal."),
                "now": now,
                "campaigns": leaves,
                "workspace": workspace_id,
                "partners": list(partner_ids),
            },
        )
        converted += env.cr.rowcount
    if converted:
        env["gobysend.journey"].invalidate_model()
    return converted


def sweep_condition_goals(env, now=None):
    """Every minute (the engine's scheduled action): journeys of running campaigns whose goal
    step is a condition that became true while they wait jump to the goal step. One statement per
    such goal step, whatever the number of journeys."""
    now = now or fields.Datetime.now()
    # sudo: the engine's own sweep over every workspace's running campaigns; each goal's test
    # runs with the rights of whoever set its campaign's filters (``goal_test``).
    steps = (
        env["gobysend.campaign.step"]
        .sudo()
        .search(
            [("kind", "=", "goal"), ("goal_type", "=", "condition"), ("campaign_id.state", "=", "running")],
            order="id",
        )
    )
    env.flush_all()
    converted = 0
    for step in steps:
        env.cr.execute(
            SQL(
                """
                UPDATE gobysend_journey j
                   SET step_id = %(step)s, state = 'active', wake_at = %(now)s, wait_until = NULL,
                       converted = TRUE, converted_at = %(now)s
                 WHERE j.campaign_id = %(campaign)s AND j.state IN ('active', 'waiting')
                   AND j.converted IS NOT TRUE AND j.step_id IS DISTINCT FROM %(step)s AND %(test)s
                """,
                step=step.id,
                now=now,
                campaign=step.campaign_id.id,
                test=goal_test(env, step),
            )
        )
        converted += env.cr.rowcount
    if converted:
        env["gobysend.journey"].invalidate_model()
        env["gobysend.journey"]._wake_advance()
    return converted
