from odoo import fields
from odoo.exceptions import ValidationError
from odoo.tools import SQL
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register
from ..timing import UNITS
from ..triggers.event import event_filter_sql

_lt = LazyTranslate(__name__)


@register(STEPS)
class WaitForEventStep(StepKind):
    """Wait until the contact performs an event (with a property filter), at most for the timeout:
    the journey goes on along "happened" as soon as the event is stored (the ingest wakes the
    journeys waiting for it), or along "timed_out" when the time is over."""

    key = "wait_event"
    label = _lt("Wait for an event")
    icon = "fa-bolt"
    sequence = 25
    branches = ("happened", "timed_out")
    branch_names = {"happened": _lt("Event happened"), "timed_out": _lt("Timed out")}
    waits_for_event = True
    expires = True
    fields = ("event_name", "event_filter", "delay_amount", "delay_unit")

    def validate(self, step):
        if not (step.event_name or "").strip():
            raise ValidationError(step.env._("Step “%(step)s”: name the event to wait for.", step=step.display_name))
        if step.delay_amount <= 0:
            raise ValidationError(
                step.env._("Step “%(step)s”: say how long to wait for the event at most.", step=step.display_name)
            )
        event_filter_sql(step.env, step.event_filter, SQL.identifier("e"))

    def summary(self, step):
        return f"{step.event_name or ''} ≤ {step.delay_amount} {step.delay_unit or ''}"

    def run(self, batch, step, rows):
        timeout = UNITS[step.delay_unit or "days"] * step.delay_amount
        # A journey arriving now waits from now; one woken up waits from when it arrived.
        since = {row.id: (row.wait_until - timeout) if row.wait_until else batch.now for row in rows}
        until = {row.id: row.wait_until or batch.now + timeout for row in rows}
        test = event_filter_sql(batch.env, step.event_filter, SQL.identifier("e"))
        batch.env.cr.execute(
            SQL(
                """
                SELECT j.id FROM gobysend_journey j
                  JOIN unnest(%s::int[], %s::timestamp[]) AS w (id, since) ON w.id = j.id
                 WHERE EXISTS (SELECT 1 FROM gobysend_event e
                                WHERE e.workspace_id = j.workspace_id AND e.partner_id = j.partner_id
                                  AND e.name = %s AND e.timestamp >= w.since AND %s)
                """,
                [row.id for row in rows],
                [since[row.id] for row in rows],
                step.event_name.strip(),
                test,
            )
        )
        happened = {row[0] for row in batch.env.cr.fetchall()}
        outcomes = []
        for row in rows:
            if row.id in happened:
                outcomes.append(Outcome.done("happened"))
            elif until[row.id] <= batch.now:
                outcomes.append(Outcome.done("timed_out"))
            else:
                outcomes.append(Outcome.wait(until[row.id]))
        return outcomes


def wake_waiting(env, workspace_id, partner_ids, names, now=None):
    """Wake the journeys of these contacts waiting for one of these events: called by the ingest
    once events are stored. Nothing is asked of the database unless a running campaign of the
    workspace waits for one of these events (``_get_awaited_events``, cached)."""
    names = set(names) & set(env["gobysend.campaign"]._get_awaited_events(workspace_id))
    if not partner_ids or not names:
        return 0
    now = now or fields.Datetime.now()
    env.cr.execute(
        """
        UPDATE gobysend_journey j SET wake_at = %(now)s
          FROM gobysend_campaign_step s
         WHERE s.id = j.step_id AND s.kind = 'wait_event' AND s.event_name = ANY(%(names)s)
           AND j.state = 'waiting' AND j.workspace_id = %(workspace)s AND j.partner_id = ANY(%(partners)s)
           AND j.wake_at > %(now)s
        """,
        {"now": now, "names": list(names), "workspace": workspace_id, "partners": list(partner_ids)},
    )
    woken = env.cr.rowcount
    if woken:
        env["gobysend.journey"].invalidate_model(["wake_at"])
        env["gobysend.journey"]._wake_advance()
    return woken
