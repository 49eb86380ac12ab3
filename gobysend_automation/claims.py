"""Claims: rows of a work table taken by one worker at a time, on any server.

A worker (a dispatcher now, the journey engine later) claims a batch of rows in one committed
statement: the rows move to the table's "claimed" state and carry the claim's owner token, and a
row of ``gobysend_claim`` holds the claim's heartbeat. From then on:

- every write the worker makes to its rows is conditional on still owning them
  (``Claim.held_condition``, ``Claim.lock_held``, ``Claim.release``), so that a worker whose claim
  was taken away changes nothing;
- the worker beats (``Claim.beat``) at least once per step that matters (a slice handed over, a
  batch done), in the transaction that records the step: a beat that finds the claim gone means
  the claim was revoked, and the worker stops without acting on the rows;
- recovery (``revoke_stale``) revokes the claims whose heartbeat is older than the stale delay,
  never the ones still beating, however long their batch runs, and hands the rows left in the
  claimed state to the table's owner to settle.

A beat and a revocation both lock the claim's row: a worker that beat in its current transaction
cannot lose its claim before that transaction ends. Claimed rows are locked as an UPDATE locks
them (``FOR NO KEY UPDATE``): rows that other transactions are inserting and that refer to them
(an email of a message being sent) do not hold them up.

A claimed table needs an ``id`` column, a ``state`` column and a ``claim_token`` varchar column
(indexed where not null); ``ClaimedTable`` names the table and its claimed state.

Everything here is SQL: row locks (``SKIP LOCKED``, ``FOR NO KEY UPDATE``) and conditional
``UPDATE ... RETURNING`` are what the protocol is made of, and the ORM has neither.
"""

import datetime
import uuid

from odoo.tools import SQL

# A claim that has not beaten for this long belongs to a worker that died or hangs.
STALE_AFTER = datetime.timedelta(minutes=10)
CLAIM_TABLE = "gobysend_claim"


class ClaimLost(Exception):
    """The claim was revoked (its heartbeat went stale): the worker must stop."""


class ClaimedTable:
    """A table whose rows are claimed: its name and the state its claimed rows are in."""

    def __init__(self, table, claimed_state):
        self.table = table
        self.claimed_state = claimed_state

    def claim(self, cr, condition, order, limit, assignments=None, now=None):
        """Claim up to ``limit`` rows matching ``condition`` (an ``SQL``), taken in ``order`` (an
        ``SQL``), skipping rows another transaction holds; ``assignments`` (an ``SQL``) are more
        ``column = value`` to set on them. Returns the ``Claim`` (its ``ids`` may be empty). The
        caller commits ``cr``: the claim exists from then on."""
        token = uuid.uuid4().hex
        now = now or _now(cr)
        # A materialized CTE: the LIMIT must be applied once; inside "IN (subquery)" the planner
        # may run the subquery more than once and claim more rows than asked. SQL because the ORM
        # has neither SKIP LOCKED nor UPDATE ... RETURNING.
        cr.execute(
            SQL(
                """
                WITH due AS MATERIALIZED (
                    SELECT id FROM %(table)s WHERE %(condition)s ORDER BY %(order)s LIMIT %(limit)s
                       FOR NO KEY UPDATE SKIP LOCKED
                )
                UPDATE %(table)s target
                   SET state = %(claimed)s, claim_token = %(token)s %(assignments)s
                  FROM due
                 WHERE target.id = due.id AND target.state <> %(claimed)s
                RETURNING target.id
                """,
                table=SQL.identifier(self.table),
                condition=condition,
                order=order,
                limit=limit,
                claimed=self.claimed_state,
                token=token,
                assignments=SQL(", %s", assignments) if assignments else SQL(),
            )
        )
        ids = sorted(row[0] for row in cr.fetchall())
        if ids:
            cr.execute(
                SQL(
                    "INSERT INTO %s (token, table_name, claimed_at, heartbeat_at) VALUES (%s, %s, %s, %s)",
                    SQL.identifier(CLAIM_TABLE),
                    token,
                    self.table,
                    now,
                    now,
                )
            )
        return Claim(self, token, ids)

    def revoke_stale(self, cr, now=None, stale_after=STALE_AFTER):
        """Revoke this table's claims that stopped beating and return the ids of their rows still
        in the claimed state, locked for the caller to settle in this transaction (and to take
        out of the claimed state, clearing ``claim_token``). Rows in the claimed state with no
        claim at all (their worker ended without settling them) are returned too."""
        now = now or _now(cr)
        cr.execute(
            SQL(
                "DELETE FROM %s WHERE table_name = %s AND heartbeat_at < %s",
                SQL.identifier(CLAIM_TABLE),
                self.table,
                now - stale_after,
            )
        )
        # A claim that beat meanwhile still exists: its rows are not returned.
        cr.execute(
            SQL(
                """
                SELECT target.id FROM %(table)s target
                 WHERE target.state = %(claimed)s
                   AND NOT EXISTS (SELECT 1 FROM %(claims)s claim WHERE claim.token = target.claim_token)
                 ORDER BY target.id
                   FOR NO KEY UPDATE
                """,
                table=SQL.identifier(self.table),
                claimed=self.claimed_state,
                claims=SQL.identifier(CLAIM_TABLE),
            )
        )
        return [row[0] for row in cr.fetchall()]


class Claim:
    """Rows of one ``ClaimedTable`` taken by one worker, identified by ``token``."""

    def __init__(self, table, token, ids):
        self.table = table
        self.token = token
        self.ids = ids

    def __bool__(self):
        return bool(self.ids)

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return f"<Claim {self.token} of {len(self.ids)} {self.table.table} rows>"

    def held_condition(self, alias):
        """An ``SQL`` condition: row ``alias`` is still this claim's (for a caller's own UPDATE)."""
        return SQL(
            "(%s.claim_token = %s AND %s.state = %s)",
            SQL.identifier(alias),
            self.token,
            SQL.identifier(alias),
            self.table.claimed_state,
        )

    def beat(self, cr, now=None):
        """Record that the worker is alive, in ``cr``'s transaction; raise ``ClaimLost`` when the
        claim was revoked. Until that transaction ends, the claim cannot be revoked."""
        cr.execute(
            SQL(
                "UPDATE %s SET heartbeat_at = %s WHERE token = %s RETURNING token",
                SQL.identifier(CLAIM_TABLE),
                now or _now(cr),
                self.token,
            )
        )
        if not cr.fetchone():
            raise ClaimLost(self.token)

    def lock_held(self, cr, ids=None):
        """Lock the rows among ``ids`` (all of the claim's by default) that are still claimed by
        this claim, for this transaction, and return their ids."""
        cr.execute(
            SQL(
                "SELECT id FROM %s target WHERE target.id = ANY(%s) AND %s ORDER BY id FOR NO KEY UPDATE",
                SQL.identifier(self.table.table),
                list(self.ids if ids is None else ids),
                self.held_condition("target"),
            )
        )
        return [row[0] for row in cr.fetchall()]

    def release(self, cr, ids, assignments, condition=None):
        """Take the rows among ``ids`` still held by this claim (and matching ``condition``, an
        ``SQL`` on the row ``target``) out of it, setting ``assignments`` (an ``SQL``: at least
        the new state); return the ids released."""
        cr.execute(
            SQL(
                """
                UPDATE %s target SET claim_token = NULL, %s
                 WHERE target.id = ANY(%s) AND %s AND %s
                RETURNING target.id
                """,
                SQL.identifier(self.table.table),
                assignments,
                list(ids),
                self.held_condition("target"),
                condition or SQL("TRUE"),
            )
        )
        return [row[0] for row in cr.fetchall()]

    def end(self, cr):
        """Forget the claim: the worker is done with its rows. Rows it left in the claimed state
        are settled by the next recovery."""
        cr.execute(SQL("DELETE FROM %s WHERE token = %s", SQL.identifier(CLAIM_TABLE), self.token))


def _now(cr):
    # The database's clock, as every worker on every server shares it.
    cr.execute("SELECT now() at time zone 'UTC'")
    return cr.fetchone()[0]
