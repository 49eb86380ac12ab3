import datetime
import logging

from odoo import SUPERUSER_ID, _, api, fields, models, tools
from odoo.exceptions import AccessError, ValidationError
from odoo.osv import expression
from odoo.tools import SQL, sql

from ..tools import pg_array
from .gobysend_segment_condition import FILTER_UID_KEY, GROUP_OPERATORS

_logger = logging.getLogger(__name__)

PREDEFINED_SEGMENTS = [
    ("paying", "Paying customers"),
    ("not_seen", "Not seen for 90 days"),
    ("unsubscribed", "Unsubscribed from any channel"),
    ("new_this_week", "New this week"),
]
PREVIEW_SIZE = 10
# Contacts re-evaluated per batch of the incremental update.
DIRTY_BATCH_SIZE = 5000
# A segment whose conditions depend on time passing is rebuilt at least this often...
TIME_REFRESH_INTERVAL = datetime.timedelta(hours=1)
# ...and every other one at least this often, for data the incremental update does not watch
# (sale orders, invoices and other records reached from a contact filter).
FULL_REFRESH_INTERVAL = datetime.timedelta(days=1)
SEGMENTS_PER_CRON_BATCH = 5
# A rebuild that moved this many contacts refreshes the planner's statistics of memberships.
ANALYZE_THRESHOLD = 1000
# Advisory lock namespace of segment evaluations (the first key of pg_try_advisory_xact_lock).
SEGMENT_LOCK_NAMESPACE = 0x6753_6567  # "gSeg"
# What changed about a queued contact, as bits of the queue's ``changes`` column: the
# incremental update re-evaluates a contact only against the segments that watch one of them.
# A contact queued without saying what changed (-1, every bit) is re-evaluated against all.
CHANGES = {"contact": 1, "activity": 2, "attribute": 4, "message": 8, "subscription": 16}
ALL_CHANGES = -1


class GobysendSegment(models.Model):
    """A named audience of a workspace, described by conditions and kept up to date.

    Membership is stored (``gobysend.segment.membership``) so that entering and leaving are
    transitions that workflows can react to. ``_rebuild`` evaluates the whole segment with
    set-based SQL; ``_cron_process_dirty_contacts`` re-evaluates only the contacts whose data
    changed, with the same compiled query restricted to their ids.
    """

    _name = "gobysend.segment"
    _inherit = ["gobysend.workspace.bound"]
    _description = "Gobysend Segment"
    _order = "workspace_id, sequence, name, id"

    name = fields.Char(required=True, translate=True)
    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", index=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)
    description = fields.Text(translate=True)
    predefined = fields.Selection(PREDEFINED_SEGMENTS, readonly=True, copy=False)
    match = fields.Selection(GROUP_OPERATORS, string="Contacts Must Meet", required=True, default="and")
    condition_ids = fields.One2many("gobysend.segment.condition", "segment_id", string="Conditions", copy=True)
    membership_ids = fields.One2many("gobysend.segment.membership", "segment_id", string="Memberships")
    current_membership_ids = fields.One2many(
        "gobysend.segment.membership", "segment_id", string="Current Members", domain=[("left_at", "=", False)]
    )
    member_count = fields.Integer(string="Members", readonly=True, copy=False)
    refreshed_at = fields.Datetime(string="Last Rebuilt", readonly=True, copy=False)
    rebuild_requested = fields.Boolean(readonly=True, default=True, copy=False)
    preview_count = fields.Integer(string="Matching Contacts", compute="_compute_preview")
    preview_partner_ids = fields.Many2many("res.partner", string="Sample Members", compute="_compute_preview")
    preview_error = fields.Char(compute="_compute_preview")
    filter_user_id = fields.Many2one(
        "res.users",
        string="Conditions Set By",
        readonly=True,
        copy=False,
        ondelete="set null",
        help="Contact filters are evaluated with this user's access rights, also in the background: "
        "the user who last changed the conditions.",
    )

    _sql_constraints = [
        (
            "predefined_uniq",
            "unique(workspace_id, predefined)",
            "A workspace has each predefined segment once.",
        )
    ]

    def init(self):
        # Contacts whose data changed since the incremental update last ran. A bare table, not
        # a model: request handlers add to it with one INSERT ... ON CONFLICT DO NOTHING, and the
        # cron drains it with DELETE ... RETURNING, neither of which the ORM offers.
        self.env.cr.execute(
            """
            CREATE TABLE IF NOT EXISTS gobysend_segment_dirty (
                partner_id integer PRIMARY KEY REFERENCES res_partner (id) ON DELETE CASCADE,
                marked_at timestamp without time zone NOT NULL DEFAULT (now() at time zone 'UTC')
            )
            """
        )
        # Added later: contacts queued before are re-evaluated against every segment.
        self.env.cr.execute(
            "ALTER TABLE gobysend_segment_dirty ADD COLUMN IF NOT EXISTS changes integer NOT NULL DEFAULT %s",
            (ALL_CHANGES,),
        )
        # Segments saved before contact filters were evaluated with their author's rights: the
        # user who last wrote one of their contact filters is taken as that author (the segment's
        # own write_uid is the scheduler's, which rebuilds it). In SQL: conditions nest, and the
        # ORM has no recursive query.
        if not sql.table_exists(self.env.cr, "gobysend_segment_condition"):
            return
        self.env.cr.execute(
            """
            WITH RECURSIVE tree (id, segment_id) AS (
                SELECT id, segment_id FROM gobysend_segment_condition WHERE segment_id IS NOT NULL
                 UNION ALL
                SELECT c.id, tree.segment_id FROM gobysend_segment_condition c JOIN tree ON c.parent_id = tree.id
            )
            UPDATE gobysend_segment s SET filter_user_id = latest.write_uid
              FROM (SELECT DISTINCT ON (tree.segment_id) tree.segment_id, c.write_uid
                      FROM tree JOIN gobysend_segment_condition c ON c.id = tree.id
                     WHERE c.kind = 'domain' AND c.write_uid IS NOT NULL
                     ORDER BY tree.segment_id, c.write_date DESC) AS latest
             WHERE latest.segment_id = s.id AND s.filter_user_id IS NULL
            """
        )

    @api.depends(
        "workspace_id",
        "match",
        "condition_ids",
        "condition_ids.kind",
        "condition_ids.group_operator",
        "condition_ids.child_ids",
        "condition_ids.partner_domain",
        "condition_ids.attribute_id",
        "condition_ids.attribute_operator",
        "condition_ids.value",
        "condition_ids.value_to",
        "condition_ids.event_name",
        "condition_ids.count_operator",
        "condition_ids.count",
        "condition_ids.days",
        "condition_ids.property_key",
        "condition_ids.property_operator",
        "condition_ids.property_value",
        "condition_ids.url_operator",
        "condition_ids.url_value",
        "condition_ids.engagement",
        "condition_ids.channel_type",
        "condition_ids.other_segment_id",
        "condition_ids.negate",
        "condition_ids.consent_channel",
        "condition_ids.consent_state",
    )
    def _compute_preview(self):
        """The size and a sample of the audience as currently described, saved or not."""
        Partner = self.env["res.partner"]
        for segment in self:
            segment.preview_count = 0
            segment.preview_partner_ids = Partner
            segment.preview_error = False
            if not segment.workspace_id:
                continue
            try:
                # With the rights of the user reading the form, who would set the conditions
                # by saving them: the count tells them nothing they could not read themselves.
                query = segment.with_context(**{FILTER_UID_KEY: self.env.uid})._get_members_query()
            except (ValidationError, AccessError) as error:
                segment.preview_error = error.args[0]
                continue
            self.env.cr.execute(query.select(SQL("count(*)")))
            segment.preview_count = self.env.cr.fetchone()[0]
            query.order = SQL("%s DESC", SQL.identifier(query.table, "id"))
            query.limit = PREVIEW_SIZE
            segment.preview_partner_ids = Partner.browse(query.get_result_ids())

    @api.constrains("workspace_id", "condition_ids")
    def _check_conditions(self):
        self._check_no_cycle()
        for segment in self:
            for condition in segment.condition_ids:
                condition._validate()

    def _check_no_cycle(self):
        for segment in self:
            segment._visit_dependencies([])

    def _visit_dependencies(self, path):
        if self in path:
            names = " → ".join(segment.display_name for segment in [*path[path.index(self) :], self])
            raise ValidationError(_("Segments cannot depend on each other in a circle: %(cycle)s.", cycle=names))
        for dependency in self.condition_ids._get_referenced_segments():
            dependency._visit_dependencies([*path, self])

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            vals["filter_user_id"] = self.env.uid
        segments = super().create(vals_list)
        segments._request_rebuild()
        self._forget_watched_partner_fields()
        return segments

    def write(self, vals):
        if "filter_user_id" in vals and not self.env.su:
            raise AccessError(_("Whose rights evaluate a segment's contact filters is set by changing its conditions."))
        if {"condition_ids", "match"} & set(vals):
            vals = dict(vals, filter_user_id=self.env.uid)
        result = super().write(vals)
        if {"condition_ids", "match", "active"} & set(vals):
            self._request_rebuild()
        if {"condition_ids", "active"} & set(vals):
            self._forget_watched_partner_fields()
        return result

    def unlink(self):
        result = super().unlink()
        self._forget_watched_partner_fields()
        return result

    def _set_filter_user(self):
        """Make the current user the one whose rights evaluate these segments' contact filters."""
        changed = self.filtered(lambda segment: segment.filter_user_id.id != self.env.uid)
        # sudo: the field is refused to direct writes; the user is the one changing the conditions.
        changed.sudo().write({"filter_user_id": self.env.uid})

    @api.ondelete(at_uninstall=False)
    def _unlink_except_in_use(self):
        for segment in self:
            users = segment._get_users()
            if users:
                raise ValidationError(
                    _(
                        "Segment “%(segment)s” cannot be deleted: %(users)s use it. Archive it instead, or "
                        "change them first.",
                        segment=segment.display_name,
                        users=", ".join(users),
                    )
                )

    def _get_users(self):
        """Names of what relies on this segment; extended by campaigns and workflows."""
        self.ensure_one()
        conditions = (
            self.env["gobysend.segment.condition"]
            .sudo()
            .search([("other_segment_id", "=", self.id)])
            ._get_root_segments()
        ) - self
        return [_("segment “%(segment)s”", segment=segment.display_name) for segment in conditions]

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_rebuild(self):
        """Rebuild now, from the form: a user waits a few seconds at most, even on large audiences."""
        self._rebuild_with_dependents()
        return True

    def action_view_members(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Members of %(segment)s", segment=self.display_name),
            "res_model": "gobysend.segment.membership",
            "view_mode": "list,form",
            "domain": [("segment_id", "=", self.id)],
            "context": {"search_default_filter_current": 1},
        }

    def action_export_members(self):
        """The current members as contacts, in a list whose columns (the contact's fields and
        its attributes in this workspace) Odoo's export takes to CSV or XLSX."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Export members of %(segment)s", segment=self.display_name),
            "res_model": "res.partner",
            "view_mode": "list",
            "views": [(self.env.ref("gobysend_automation.res_partner_view_list_gobysend_members").id, "list")],
            "domain": [
                ("gobysend_segment_membership_ids", "any", [("segment_id", "=", self.id), ("left_at", "=", False)])
            ],
            "context": {"gobysend_workspace_id": self.workspace_id.id, "create": False},
            "help": _("<p>Select the members, then Export in the Action menu to download them as CSV or XLSX.</p>"),
        }

    def action_view_history(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Size of %(segment)s over time", segment=self.display_name),
            "res_model": "gobysend.segment.snapshot",
            "view_mode": "graph,list",
            "domain": [("segment_id", "=", self.id)],
        }

    # ------------------------------------------------------------------
    # Compilation
    # ------------------------------------------------------------------

    def _get_partner_domain(self, now=None, scope=None):
        """The whole condition tree as one domain on ``res.partner`` (without the workspace scope),
        to be searched with ``_contacts_model``."""
        self.ensure_one()
        now = now or fields.Datetime.now()
        self = self.with_context(**{FILTER_UID_KEY: self._get_filter_uid()})
        roots = self.condition_ids.filtered(lambda condition: not condition.parent_id)
        return self.env["gobysend.segment.condition"]._combine(roots, self.match, self.workspace_id, now, scope)

    def _get_filter_uid(self):
        """Whose access rights evaluate this segment's contact filters: the user who last set
        the conditions (or the reader of the form, see ``_compute_preview``); 0 when that user
        no longer exists. Without contact filters, nothing a user wrote is evaluated as a search
        of contacts: every other kind of condition names its workspace itself, so the evaluation
        needs no record rules (they would only slow it down)."""
        self.ensure_one()
        if not self.condition_ids._has_contact_filter():
            return SUPERUSER_ID
        if FILTER_UID_KEY in self.env.context:
            return self.env.context[FILTER_UID_KEY]
        return self.filter_user_id.id or 0

    def _contacts_model(self):
        """``res.partner`` as this segment's members are searched: with the access rights of
        ``_get_filter_uid``, so that record rules apply to the contacts and to every record a
        contact filter reaches (another company's, another workspace's)."""
        uid = self._get_filter_uid()
        Partner = self.env["res.partner"].with_context(active_test=True)
        # Superuser only without contact filters (see _get_filter_uid), or for a filter set by the
        # superuser; a deleted author's filters match no one (gobysend.segment.condition).
        return Partner.with_user(uid) if uid else Partner.sudo()

    def _get_members_query(self, partner_ids=None, now=None):
        """The ORM ``Query`` of the contacts that meet this segment's conditions now.

        Members are always drawn from the workspace's contacts (active subscriptions);
        ``partner_ids`` restricts the evaluation to those contacts (the incremental update).
        """
        self.ensure_one()
        scope = list(partner_ids) if partner_ids is not None else None
        contacts = [("workspace_id", "=", self.workspace_id.id)]
        if scope is not None:
            contacts.append(("partner_id", "in", scope))
        subscriptions = self.env["gobysend.subscription"].sudo()._search(contacts)
        domain = expression.AND(
            [
                [("id", "in", subscriptions.subselect(SQL.identifier(subscriptions.table, "partner_id")))],
                self._get_partner_domain(now, scope),
            ]
        )
        # No "id in scope" on the contacts themselves: the scoped subscription subquery already
        # restricts them, and PostgreSQL would compare every index probe with the whole list.
        return self._contacts_model()._search(domain)

    def _get_matching_partner_ids(self, partner_ids=None, now=None):
        return set(self._get_members_query(partner_ids, now).get_result_ids())

    # ------------------------------------------------------------------
    # Membership
    # ------------------------------------------------------------------

    def _try_lock(self):
        """Take this segment's evaluation lock for the transaction, or return False when
        another transaction (another cron worker or server) holds it."""
        self.ensure_one()
        self.env.cr.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (SEGMENT_LOCK_NAMESPACE, self.id))
        return self.env.cr.fetchone()[0]

    def _apply_membership(self, partner_ids=None, now=None):
        """Bring stored membership in line with the conditions, for all contacts or only
        ``partner_ids``; return (entered, left) counts."""
        entered, left, _members = self._evaluate_membership(partner_ids, now)
        return entered, left

    def _evaluate_membership(self, partner_ids=None, now=None):
        """``_apply_membership``, returning also the number of members before it, among
        ``partner_ids`` or in all.

        Two SQL statements, because the ORM has no set-based INSERT ... SELECT or UPDATE and a
        Python diff over a million contacts would take minutes. The first only reads: it
        evaluates the conditions and compares the result with the open memberships, so a
        rebuild that changes nothing writes nothing, and PostgreSQL may spread that work over
        several processes (it never does for a statement that writes). The second, only when
        something changed, closes the memberships of the contacts that left and opens those of
        the contacts that entered, from the two lists of ids the first returned: their sizes
        are known to the planner, however far off its estimate of the conditions was.

        The membership rows are the record of transitions (see ``gobysend.segment.membership``),
        each made exactly once: the partial unique index allows one open membership per
        contact (a concurrent insert is skipped, not counted), closing re-checks
        ``left_at IS NULL``, and this segment's evaluations hold its lock (``_try_lock``).
        """
        self.ensure_one()
        now = now or fields.Datetime.now()
        self.env.flush_all()
        if partner_ids is not None:
            query = self._get_members_query(partner_ids, now)
            scope = SQL("AND m.partner_id = ANY(%s)", list(partner_ids))
            entering = SQL("TRUE")
        else:
            # The whole workspace: the conditions are evaluated for every contact, but whether
            # a contact is one of the workspace's is only asked of those not yet members. A
            # member who left the workspace was queued for the incremental update when its
            # subscription was archived or deleted (see gobysend.subscription), which
            # closes its memberships; asking it of every member again would cost a rebuild
            # with nothing to change more than Odoo's own search of the same conditions.
            query = self._contacts_model()._search(self._get_partner_domain(now))
            scope = SQL()
            # Asked in the statement that writes, of the candidates alone: in the statement that
            # reads, a subquery per contact would make PostgreSQL plan (and compile) for a
            # hundred thousand of them, even when none is new.
            entering = SQL(
                """EXISTS (SELECT 1 FROM gobysend_subscription s
                            WHERE s.workspace_id = %s AND s.partner_id = new.id AND s.active)""",
                self.workspace_id.id,
            )
        self.env.cr.execute(
            SQL(
                """
                -- A full join is planned as a hash or merge join, never as a nested loop: the
                -- difference stays linear whatever the planner believes about the sizes of
                -- both sides, and is found in one pass over each. The lists travel as text:
                -- read back into the next statement as they are, without a Python object per
                -- contact.
                SELECT count(current.partner_id),
                       array_agg(target.id) FILTER (WHERE current.partner_id IS NULL)::text,
                       array_agg(current.partner_id) FILTER (WHERE target.id IS NULL)::text
                  FROM (%(members)s) AS target (id)
                  FULL JOIN (
                      SELECT m.partner_id FROM gobysend_segment_membership m
                       WHERE m.segment_id = %(segment)s AND m.left_at IS NULL %(scope)s
                  ) AS current ON current.partner_id = target.id
                """,
                members=query.select(SQL.identifier(query.table, "id")),
                segment=self.id,
                scope=scope,
            )
        )
        members, new, gone = self.env.cr.fetchone()
        if not new and not gone:
            return 0, 0, members
        self.env.cr.execute(
            SQL(
                """
                WITH closed AS (
                    UPDATE gobysend_segment_membership m
                       SET left_at = %(now)s
                     WHERE m.segment_id = %(segment)s AND m.left_at IS NULL
                       AND m.partner_id = ANY(%(gone)s::int[])
                 RETURNING 1
                ),
                opened AS (
                    INSERT INTO gobysend_segment_membership (segment_id, partner_id, entered_at)
                    SELECT %(segment)s, new.id, %(now)s
                      FROM unnest(%(new)s::int[]) AS new (id)
                     WHERE %(entering)s
                     -- In contact order: each insert then lands next to the previous one in the
                     -- indexes on contacts, and a large segment reads and writes each index
                     -- page once rather than once per row.
                     ORDER BY new.id
                        ON CONFLICT (segment_id, partner_id) WHERE left_at IS NULL DO NOTHING
                 RETURNING 1
                )
                SELECT (SELECT count(*) FROM opened), (SELECT count(*) FROM closed)
                """,
                now=now,
                segment=self.id,
                new=new or "{}",
                gone=gone or "{}",
                entering=entering,
            )
        )
        entered, left = self.env.cr.fetchone()
        if entered or left:
            self.env["gobysend.segment.membership"].invalidate_model()
        return entered, left, members

    def _rebuild(self, now=None):
        """Full rebuild of each segment, in dependency order; returns the segments rebuilt
        (a segment another transaction is rebuilding is left to it)."""
        now = now or fields.Datetime.now()
        done = self.browse()
        for segment in self._sorted_by_dependency():
            if not segment.active or not segment._try_lock():
                continue
            entered, left, members = segment._evaluate_membership(now=now)
            if entered + left >= ANALYZE_THRESHOLD:
                # The planner's statistics would still describe the table before this rebuild,
                # and the next evaluation would pick nested loops over a now large table.
                self.env.cr.execute("ANALYZE gobysend_segment_membership")
            # Counted by the evaluation itself, which read every open membership anyway; the
            # incremental update only adjusts the count, and a rebuild sets it right again. In
            # SQL, as the adjustments are: the ORM would skip writing a 0 over a NULL.
            self.env.cr.execute(
                "UPDATE gobysend_segment SET member_count = %s WHERE id = %s", (members + entered - left, segment.id)
            )
            segment.invalidate_recordset(["member_count"])
            segment.sudo().write({"refreshed_at": now, "rebuild_requested": False})
            self.env["gobysend.segment.snapshot"]._record(segment, entered, left, now)
            done |= segment
            _logger.info("Segment %s rebuilt: %s entered, %s left", segment.id, entered, left)
        return done

    def _rebuild_with_dependents(self):
        return (self | self._get_dependents())._rebuild()

    def _get_dependents(self):
        """Active segments whose conditions use these segments, directly or not."""
        dependents = self.browse()
        frontier = self
        while frontier:
            conditions = (
                self.env["gobysend.segment.condition"].sudo().search([("other_segment_id", "in", frontier.ids)])
            )
            found = conditions._get_root_segments().filtered("active") - dependents - self
            dependents |= found
            frontier = found
        return dependents

    def _get_watched_changes(self):
        """The bits of ``CHANGES`` that can change this segment's members: those its conditions
        watch, and the contact and its subscription, which make it one of the workspace's."""
        self.ensure_one()
        watched = CHANGES["contact"] | CHANGES["subscription"]
        for change in self.condition_ids._get_watched_changes(set()):
            watched |= CHANGES[change]
        return watched

    @api.model
    @tools.ormcache()
    def _get_watched_partner_fields(self):
        """Names of the contact fields whose change can move a contact into or out of an active
        segment: ``active`` (archived contacts are nobody's members), every field a contact
        filter names, and the fields those are computed from. Empty without active segments.

        Cached in the registry, because every write of a contact by any app asks it; segments
        and conditions clear it when they change (``_forget_watched_partner_fields``).
        """
        # Superuser to see every workspace's segments: only field names leave this method. The
        # answer is shared by every caller, so the caller's context must not change it.
        segments = self.sudo().with_context(active_test=True).search([])
        if not segments:
            return frozenset()
        Partner = self.env["res.partner"]
        names = {"active"} | segments.condition_ids._get_watched_partner_fields(set())
        pending = list(names)
        while pending:
            field = Partner._fields.get(pending.pop())
            if field is None:
                continue
            # A stored field computed from others changes when they are written; a computed
            # field a filter can search reads them too.
            depends = self.pool.field_depends.get(field, ())
            if not field.store and field.search and not depends:
                # A search method that says nothing of what it reads (phone_mobile_search):
                # any stored field may matter.
                names.update(name for name, other in Partner._fields.items() if other.store)
            for path in depends:
                name = path.split(".")[0]
                if name not in names:
                    names.add(name)
                    pending.append(name)
        return frozenset(name for name in names if name in Partner._fields)

    @api.model
    def _forget_watched_partner_fields(self):
        self.env.registry.clear_cache()

    def _sorted_by_dependency(self):
        """These segments, each after the segments its conditions use (cycles are refused on save)."""
        ordered = []
        seen = set()

        def visit(segment):
            if segment.id in seen:
                return
            seen.add(segment.id)
            for dependency in segment.condition_ids._get_referenced_segments():
                if dependency in self:
                    visit(dependency)
            ordered.append(segment)

        for segment in self:
            visit(segment)
        return self.browse([segment.id for segment in ordered])

    def _request_rebuild(self):
        """Ask the background rebuild to evaluate these segments (and their dependents) soon;
        saving a form never waits for it."""
        (self | self._get_dependents()).sudo().write({"rebuild_requested": True})
        cron = self.env.ref("gobysend_automation.ir_cron_segment_rebuild", raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger()

    # ------------------------------------------------------------------
    # Incremental update
    # ------------------------------------------------------------------

    @api.model
    def _mark_dirty(self, partner_ids, change=None, subscribed=False):
        """Queue contacts for re-evaluation by the incremental update, saying what changed: a
        key of ``CHANGES``, bits of them, or None for anything. Cheap enough for any request:
        one INSERT, only for contacts of some workspace, nothing evaluated here.
        ``subscribed`` says the caller knows each contact has a subscription (ingestion writes
        only its workspace's contacts): the check for it is then left out, which is most of the
        statement's cost in a batch of new contacts.
        Raw SQL because the queue is a bare table (see ``init``)."""
        partner_ids = [partner_id for partner_id in set(partner_ids or ()) if partner_id]
        if not partner_ids:
            return
        changes = CHANGES[change] if isinstance(change, str) else (ALL_CHANGES if change is None else change)
        if subscribed:
            contacts = SQL(
                "SELECT partner_id, %s FROM unnest(%s::int[]) AS t(partner_id)", changes, pg_array(partner_ids)
            )
        else:
            contacts = SQL(
                """
                SELECT p.id, %(changes)s FROM res_partner p
                 WHERE p.id = ANY(%(ids)s)
                   AND (EXISTS (SELECT 1 FROM gobysend_subscription s WHERE s.partner_id = p.id)
                        OR EXISTS (SELECT 1 FROM gobysend_segment_membership m
                                    WHERE m.partner_id = p.id AND m.left_at IS NULL))
                """,
                ids=partner_ids,
                changes=changes,
            )
        self.env.cr.execute(
            SQL(
                """
                INSERT INTO gobysend_segment_dirty AS d (partner_id, changes)
                %s
                    ON CONFLICT (partner_id) DO UPDATE SET changes = d.changes | EXCLUDED.changes
                    -- A contact already queued for this kind of change is left as it is.
                     WHERE d.changes | EXCLUDED.changes <> d.changes
                """,
                contacts,
            )
        )

    @api.model
    def _process_dirty_contacts(self, limit=DIRTY_BATCH_SIZE, now=None):
        """Re-evaluate one batch of changed contacts against the active segments of their
        workspaces that watch what changed (``_get_watched_changes``): a new event cannot move
        anyone into or out of a segment on cities. Return the number of contacts taken from
        the queue.

        ``FOR UPDATE SKIP LOCKED`` lets several workers drain the queue at once without taking
        the same contacts; a segment that another transaction is rebuilding gets its contacts
        back into the queue, so no change is ever lost.
        """
        now = now or fields.Datetime.now()
        self.env.cr.execute(
            """
            DELETE FROM gobysend_segment_dirty
             WHERE partner_id IN (SELECT partner_id FROM gobysend_segment_dirty
                                   ORDER BY partner_id LIMIT %s FOR UPDATE SKIP LOCKED)
         RETURNING partner_id, changes
            """,
            (limit,),
        )
        changes = dict(self.env.cr.fetchall())
        partner_ids = list(changes)
        if not partner_ids:
            return 0
        self.env.flush_all()
        # Archived subscriptions and open memberships count too: their contacts may have to leave.
        # Without parallel workers, for this statement only: the planner overrates probing
        # indexes for a list of ids, and starting the workers took longer than the lookup.
        self.env.cr.execute("SELECT current_setting('max_parallel_workers_per_gather')")
        parallel_workers = self.env.cr.fetchone()[0]
        self.env.cr.execute("SELECT set_config('max_parallel_workers_per_gather', '0', true)")
        self.env.cr.execute(
            """
            SELECT workspace_id, array_agg(DISTINCT partner_id) FROM (
                SELECT workspace_id, partner_id FROM gobysend_subscription WHERE partner_id = ANY(%(ids)s)
                 UNION ALL
                SELECT s.workspace_id, m.partner_id
                  FROM gobysend_segment_membership m JOIN gobysend_segment s ON s.id = m.segment_id
                 WHERE m.partner_id = ANY(%(ids)s) AND m.left_at IS NULL
            ) contacts GROUP BY workspace_id
            """,
            {"ids": partner_ids},
        )
        by_workspace = dict(self.env.cr.fetchall())
        self.env.cr.execute("SELECT set_config('max_parallel_workers_per_gather', %s, true)", (parallel_workers,))
        segments = self.sudo().search([("workspace_id", "in", list(by_workspace))])
        postponed = set()
        for segment in segments._sorted_by_dependency():
            watched = segment._get_watched_changes()
            ids = [partner_id for partner_id in by_workspace[segment.workspace_id.id] if changes[partner_id] & watched]
            if not ids:
                continue
            if not segment._try_lock():
                postponed.update(ids)
                continue
            entered, left = segment._apply_membership(partner_ids=ids, now=now)
            if entered or left:
                # Adjusted rather than recounted: a count over a large segment would cost more
                # than the whole evaluation of a batch.
                self.env.cr.execute(
                    "UPDATE gobysend_segment SET member_count = member_count + %s WHERE id = %s",
                    (entered - left, segment.id),
                )
                segment.invalidate_recordset(["member_count"])
                self.env["gobysend.segment.snapshot"]._record(segment, entered, left, now)
        # Queued again with what had changed about them, for the segments that watch it.
        for partner_changes in {changes[partner_id] for partner_id in postponed}:
            self._mark_dirty(
                [partner_id for partner_id in postponed if changes[partner_id] == partner_changes], partner_changes
            )
        return len(partner_ids)

    @api.model
    def _cron_process_dirty_contacts(self):
        """Scheduled entry point of the incremental update: one batch per run, and the
        scheduler runs it again at once while contacts are left in the queue."""
        done = self._process_dirty_contacts()
        self.env.cr.execute("SELECT count(*) FROM gobysend_segment_dirty")
        remaining = self.env.cr.fetchone()[0]
        self.env["ir.cron"]._notify_progress(done=done, remaining=remaining)

    @api.model
    def _get_due_segments(self, now=None):
        now = now or fields.Datetime.now()
        segments = self.sudo().search([])
        return segments.filtered(
            lambda segment: (
                segment.rebuild_requested
                or not segment.refreshed_at
                or segment.refreshed_at
                <= now - (TIME_REFRESH_INTERVAL if segment.condition_ids._depends_on_time() else FULL_REFRESH_INTERVAL)
            )
        )

    @api.model
    def _cron_rebuild(self):
        """Scheduled full rebuild: segments whose conditions changed, and the refresh that keeps
        conditions on time windows true as time passes. A few segments per run; the scheduler
        runs it again while some are due."""
        due = self._get_due_segments()._sorted_by_dependency()
        # Segments used by others come first, so that the others read fresh memberships.
        done = due[:SEGMENTS_PER_CRON_BATCH]._rebuild()
        self.env["ir.cron"]._notify_progress(done=len(done), remaining=len(due - done))

    @api.model
    def _cron_snapshot(self):
        """Daily record of every segment's size, for the graph of size over time."""
        now = fields.Datetime.now()
        for segment in self.sudo().search([]):
            self.env["gobysend.segment.snapshot"]._record(segment, 0, 0, now)

    # ------------------------------------------------------------------
    # Predefined segments
    # ------------------------------------------------------------------

    @api.model
    def _predefined_values(self, workspace):
        """The segments every workspace starts with; editable like any other."""
        return [
            {
                "predefined": "paying",
                "name": _("Paying customers"),
                "description": _("Contacts who completed at least one order."),
                "sequence": 1,
                "condition_ids": [
                    (
                        0,
                        0,
                        {
                            "kind": "event",
                            "event_name": "order_completed",
                            "count_operator": "at_least",
                            "count": 1,
                            "days": 0,
                        },
                    )
                ],
            },
            {
                "predefined": "not_seen",
                "name": _("Not seen for 90 days"),
                "description": _("Contacts with no activity in the last 90 days."),
                "sequence": 2,
                "condition_ids": [
                    (0, 0, {"kind": "event", "event_name": False, "count_operator": "exactly", "count": 0, "days": 90})
                ],
            },
            {
                "predefined": "unsubscribed",
                "name": _("Unsubscribed from any channel"),
                "description": _("Contacts who opted out of at least one channel."),
                "sequence": 3,
                "condition_ids": [
                    (0, 0, {"kind": "consent", "consent_channel": False, "consent_state": "unsubscribed"})
                ],
            },
            {
                "predefined": "new_this_week",
                "name": _("New this week"),
                "description": _("Contacts who joined the workspace in the last 7 days."),
                "sequence": 4,
                "condition_ids": [(0, 0, {"kind": "joined", "days": 7})],
            },
        ]

    @api.model
    def _create_predefined(self, workspaces):
        existing = {
            (segment.workspace_id.id, segment.predefined)
            for segment in self.sudo()
            .with_context(active_test=False)
            .search([("workspace_id", "in", workspaces.ids), ("predefined", "!=", False)])
        }
        vals_list = [
            dict(vals, workspace_id=workspace.id)
            for workspace in workspaces
            for vals in self._predefined_values(workspace)
            if (workspace.id, vals["predefined"]) not in existing
        ]
        return self.sudo().create(vals_list)
