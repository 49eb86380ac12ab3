import datetime
import hashlib
import logging
import re

from odoo import _, api, fields, models, sql_db
from odoo.exceptions import UserError
from odoo.tools import consteq

_logger = logging.getLogger(__name__)

# The key is 256 random bits, so one fast hash is enough to make a leaked table useless;
# a slow password hash would cost every API request several milliseconds.
KEY_PREFIX_LENGTH = 12
# last_used_at is refreshed at most this often, so that busy keys do not turn every request
# into a write on the same row.
LAST_USED_RESOLUTION = datetime.timedelta(minutes=1)
RATE_WINDOW_SECONDS = 60
# Set once by ``gobysend.workspace.api_key_create``: changing them would hand a known secret to
# another workspace, past the record rules that only check the key's current workspace.
IMMUTABLE_FIELDS = ("workspace_id", "prefix", "key_hash")
# What ``gobysend.workspace.api_key_create`` hands out (``gbs_<hex>_<url-safe base64>``), with
# room to spare. Anything else in an Authorization header (other characters, NUL, any length)
# is refused before it reaches the database.
KEY_FORMAT = re.compile(r"[A-Za-z0-9_-]{%d,128}" % (KEY_PREFIX_LENGTH + 1))


class GobysendApiKey(models.Model):
    _name = "gobysend.api.key"
    _description = "Gobysend Workspace API Key"
    _order = "create_date desc, id desc"

    name = fields.Char(required=True)
    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", index=True)
    prefix = fields.Char(
        required=True, readonly=True, index=True, help="The first characters of the key, to recognise it."
    )
    key_hash = fields.Char(required=True, readonly=True, groups="base.group_system")
    active = fields.Boolean(default=True, readonly=True)
    revoked_at = fields.Datetime(readonly=True)
    last_used_at = fields.Datetime(readonly=True)

    _sql_constraints = [("prefix_uniq", "unique(prefix)", "API key prefixes must be unique.")]

    def init(self):
        # Request counters per key and minute, shared by every worker and server. Unlogged:
        # losing them in a crash only resets a rate window.
        self.env.cr.execute(
            """
            CREATE UNLOGGED TABLE IF NOT EXISTS gobysend_api_rate (
                key_id integer NOT NULL,
                window_start timestamp NOT NULL,
                hits integer NOT NULL,
                PRIMARY KEY (key_id, window_start)
            )
            """
        )

    def write(self, vals):
        for name in IMMUTABLE_FIELDS:
            if name not in vals:
                continue
            field = self._fields[name]
            for key in self.sudo():
                if key[name] != field.convert_to_record(field.convert_to_cache(vals[name], key), key):
                    raise UserError(
                        _("An API key cannot change its workspace or its secret; create a new key instead.")
                    )
        if vals.get("active") and any(self.mapped("revoked_at")):
            raise UserError(_("A revoked API key cannot be restored; create a new key instead."))
        return super().write(vals)

    @api.model
    def _hash_key(self, plaintext):
        return hashlib.sha256(plaintext.encode()).hexdigest()

    def action_revoke(self):
        self.write({"active": False, "revoked_at": fields.Datetime.now()})
        return True  # callable over XML-RPC, which cannot marshal None

    @api.model
    def _authenticate(self, plaintext):
        """Return the active key matching ``plaintext`` (sudo), or an empty recordset.

        This runs before every API request: one plain query, which also puts what the caller
        reads next (the key's workspace and its rate limit) in the record cache.
        """
        if not isinstance(plaintext, str) or not KEY_FORMAT.fullmatch(plaintext):
            return self.browse()
        self.flush_model(["prefix", "key_hash", "active", "workspace_id"])
        self.env["gobysend.workspace"].flush_model(["active", "api_rate_limit"])
        self.env.cr.execute(
            """
            SELECT k.id, k.key_hash, k.workspace_id, w.api_rate_limit
              FROM gobysend_api_key k
              JOIN gobysend_workspace w ON w.id = k.workspace_id
             WHERE k.prefix = %s AND k.active AND w.active
            """,
            (plaintext[:KEY_PREFIX_LENGTH],),
        )
        row = self.env.cr.fetchone()
        if not row or not consteq(row[1], self._hash_key(plaintext)):
            return self.browse()
        key = self.sudo().browse(row[0])
        self.env.cache.update(key, self._fields["workspace_id"], [row[2]])
        self.env.cache.update(key.workspace_id, key.workspace_id._fields["api_rate_limit"], [row[3]])
        return key

    def _touch_and_count(self, now=None):
        """Record use of this key and return how many requests it made in the current minute.

        Runs on its own short transaction, so that neither the counter nor ``last_used_at``
        holds a row lock for the length of the request: concurrent requests with one key would
        otherwise queue behind each other. A plain connection rather than ``registry.cursor()``,
        which in test mode hands out the test transaction to one thread at a time.
        """
        self.ensure_one()
        now = now or fields.Datetime.now()
        window_start = now.replace(second=0, microsecond=0)
        with sql_db.db_connect(self.env.cr.dbname).cursor() as cr:
            # Odoo cursors run in REPEATABLE READ, where two requests bumping the same counter
            # at once fail with a serialization error; a counter only needs READ COMMITTED.
            # One round trip: this runs before every API request.
            cr.execute(
                """
                SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
                WITH touched AS (
                    UPDATE gobysend_api_key SET last_used_at = %s
                     WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)
                )
                INSERT INTO gobysend_api_rate (key_id, window_start, hits) VALUES (%s, %s, 1)
                ON CONFLICT (key_id, window_start) DO UPDATE SET hits = gobysend_api_rate.hits + 1
                RETURNING hits
                """,
                (now, self.id, now - LAST_USED_RESOLUTION, self.id, window_start),
            )
            hits = cr.fetchone()[0]
        return hits, window_start

    @api.model
    def _cron_purge_rate_windows(self):
        self.env.cr.execute(
            "DELETE FROM gobysend_api_rate WHERE window_start < %s",
            (fields.Datetime.now() - datetime.timedelta(seconds=RATE_WINDOW_SECONDS * 2),),
        )
        _logger.info("Purged %s expired API rate windows", self.env.cr.rowcount)
        return True

    def _get_rate_limit_message(self):
        return _("Too many requests for this API key; try again in a moment.")
