"""Customer lists imported into a workspace from a CSV or XLSX file, in the background.

Odoo's own import (``base_import``) reads the file's first rows for the preview, detecting its
encoding and separator, and reads XLSX sheets. What it cannot do is done beside it: attributes
and consent per channel, and a file of a million rows, which the background jobs read as a
stream (``base_import`` holds a whole file in memory) and store in chunks through the bulk
identify of the tracking API, so that the same rules apply to both. The import's first job
splits the file into chunks; each chunk is a job of its own, and several run at once on as many
queue_job workers, on one server or several.
"""

import csv
import io
import logging

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools.mimetypes import guess_mimetype

from odoo.addons.queue_job.exception import RetryableJobError

from ..exceptions import InvalidInput
from ..tools import fewer_collections, find_nul_character, pg_array, storable_text
from .gobysend_attribute import ATTRIBUTE_TYPE_SELECTION, KEY_RE, STANDARD_KEYS
from .gobysend_ingest import ConcurrentContactCreation
from .gobysend_subscription import CHANNELS

_logger = logging.getLogger(__name__)

# Odoo's own limit on an uploaded file (``web.max_file_upload_size``, and the HTTP layer's
# request size); checked on the stored file before anything reads it.
DEFAULT_MAX_IMPORT_BYTES = 128 * 1024 * 1024
MAX_BYTES_PARAMETER = "gobysend_automation.import_max_bytes"
# Rows per background job: each chunk is committed on its own, so that progress shows, chunks
# run at once on several workers, and a stopped worker's chunk runs again without the others.
CHUNK_ROWS = 10000
# The import's jobs have a channel of their own: its capacity in the queue_job configuration is
# how many chunks run at once (e.g. channels = root:4,root.gobysend.import:2).
IMPORT_CHANNEL = "root.gobysend.import"
# Rows per bulk identify call within a chunk.
IDENTIFY_SLICE = 1000
PREVIEW_ROWS = 10
# The preview reads this much of the file's beginning, never the whole file.
HEAD_BYTES = 64 * 1024
CSV_MIMETYPES = ("text/csv", "text/plain", "application/csv")
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TRUE_WORDS = {"1", "true", "yes", "y", "x", "subscribed", "có"}
FALSE_WORDS = {"0", "false", "no", "n", "unsubscribed", "không"}
# Contact fields a column can fill: the API's identifiers and standard keys.
CONTACT_TARGETS = [
    ("id", "Customer ID"),
    ("email", "Email"),
    ("phone", "Phone"),
    ("name", "Name"),
    ("city", "City"),
    ("birthday", "Birthday"),
    ("country_code", "Country Code"),
    ("language", "Language"),
]
IDENTIFIER_TARGETS = ("id", "email", "phone")
COLUMN_TARGETS = [("ignore", "Ignore"), *CONTACT_TARGETS, ("attribute", "Attribute"), ("consent", "Consent")]
IMPORT_STATES = [
    ("queued", "Queued"),
    ("running", "Running"),
    ("done", "Done"),
    ("failed", "Failed"),
]


class RowRejected(Exception):
    """A row that cannot be imported, with the reason shown in the rejected rows' report."""


def read_file_head(env, head, file_name):
    """Recognise a file from its first bytes and read its first rows through ``base_import``:
    (file type, encoding, separator, rows). An XLSX file must be whole to be read."""
    if not head:
        raise UserError(_("The file is empty."))
    mimetype = guess_mimetype(head)
    extension = (file_name or "").rsplit(".", 1)[-1].lower() if "." in (file_name or "") else ""
    if mimetype == XLSX_MIMETYPE or (extension == "xlsx" and mimetype == "application/zip"):
        file_type = "xlsx"
    elif extension in ("csv", "txt", "") and (mimetype in CSV_MIMETYPES or mimetype == "application/octet-stream"):
        file_type = "csv"
    else:
        raise UserError(
            _("“%(name)s” is not a CSV or XLSX file; save the customer list in one of these formats.", name=file_name)
        )
    if file_type == "csv":
        # Up to the last complete line: the preview never reads the whole file.
        if len(head) >= HEAD_BYTES and b"\n" in head:
            head = head[: head.rindex(b"\n") + 1]
        try:
            head.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = ""
    else:
        encoding = ""
    # sudo: a transient parser of the bytes given here; it reads nothing of the database.
    reader = env["base_import.import"].sudo().create({"file": head, "file_name": file_name, "file_type": mimetype})
    options = {"quoting": '"', "separator": "", "encoding": encoding, "has_headers": True}
    try:
        _length, rows = reader._read_file(options)
    except (UnicodeDecodeError, ValueError, csv.Error) as error:
        raise UserError(_("The file cannot be read: %(error)s", error=error)) from None
    encoding = (options.get("encoding") or "utf-8").lower()
    if encoding in ("ascii", "us-ascii"):
        encoding = "utf-8"  # what follows the first rows may use more than ASCII
    if file_type == "csv" and encoding.startswith(("utf-16", "utf-32")):
        raise UserError(_("Save the CSV file in UTF-8 (or another encoding of one byte per character)."))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise UserError(_("The file is empty."))
    return file_type, encoding, options.get("separator") or ",", rows


def iter_csv_rows(handle, offset, encoding, separator):
    """Yield (row, byte offset after it) from the CSV file ``handle``, starting at ``offset``.

    Lines are read one at a time, so memory stays flat whatever the file's size. The csv
    module asks for a line only when a record needs one, which makes the offset after each
    record exact, quoted line breaks included: the next chunk starts there."""
    handle.seek(offset)
    position = offset
    if offset == 0 and encoding.replace("_", "-") == "utf-8":
        encoding = "utf-8-sig"  # drops a byte order mark

    def lines():
        nonlocal position, encoding
        for raw in iter(handle.readline, b""):
            position += len(raw)
            text = raw.decode(encoding, errors="replace")
            encoding = "utf-8" if encoding == "utf-8-sig" else encoding
            yield text

    for row in csv.reader(lines(), delimiter=separator, quotechar='"'):
        yield row, position


def cell_value(cell, column):
    """The value of a non-empty cell for its column's target; raise ``RowRejected``."""
    target = column["target"]
    if target == "consent":
        word = cell.strip().lower()
        if word in TRUE_WORDS:
            return "subscribed"
        if word in FALSE_WORDS:
            return "unsubscribed"
        raise RowRejected(
            _(
                "%(column)s: “%(value)s” is not a consent answer; use yes or no.",
                column=column["header"],
                value=cell,
            )
        )
    if target == "attribute" and column["type"] == "boolean":
        word = cell.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise RowRejected(_("%(column)s: “%(value)s” is not yes or no.", column=column["header"], value=cell))
    # Numbers, dates and texts are read by the attribute's own type, as the API reads them.
    return cell.strip()


def row_payload(row, columns):
    """The identify payload and consent of one row: (payload, {channel: state})."""
    payload = {}
    attributes = {}
    consent = {}
    for column in columns:
        index = column["index"]
        cell = row[index] if index < len(row) else ""
        if not cell.strip():
            continue  # an empty cell leaves the contact's value as it is
        value = cell_value(cell, column)
        target = column["target"]
        if target in IDENTIFIER_TARGETS:
            payload[target] = value
        elif target == "consent":
            consent[column["channel"]] = value
        elif target == "attribute":
            attributes[column["key"]] = value
        else:
            attributes[target] = value
    if attributes:
        payload["attributes"] = attributes
    return payload, consent


def rejection_reason(error, columns):
    """An ``InvalidInput`` of the bulk identify, told with the column it comes from."""
    field = error.field.removeprefix("attributes.")
    for column in columns:
        if field in (column["target"], column.get("key")):
            return _("%(column)s: %(message)s", column=column["header"], message=error.message)
    return error.message


class GobysendContactImport(models.Model):
    """One customer list being imported into a workspace: its file, its column mapping and
    its progress. Rows that cannot be imported are kept with the reason, for download."""

    _name = "gobysend.contact.import"
    _inherit = ["gobysend.workspace.bound"]
    _description = "Gobysend Contact Import"
    _order = "id desc"

    name = fields.Char(string="File", required=True, readonly=True)
    workspace_id = fields.Many2one("gobysend.workspace", required=True, readonly=True, index=True, ondelete="cascade")
    attachment_id = fields.Many2one("ir.attachment", string="Imported File", readonly=True)
    file_type = fields.Selection([("csv", "CSV"), ("xlsx", "XLSX")], readonly=True, required=True, default="csv")
    encoding = fields.Char(readonly=True, default="utf-8")
    separator = fields.Char(readonly=True, default=",")
    columns = fields.Json(readonly=True, help="The mapping of the file's columns, as the import wizard saved it.")
    state = fields.Selection(IMPORT_STATES, default="queued", required=True, readonly=True)
    rows_total = fields.Integer(string="Rows", readonly=True)
    rows_done = fields.Integer(string="Rows Read", readonly=True)
    rows_rejected = fields.Integer(string="Rows Rejected", readonly=True)
    contacts_created = fields.Integer(readonly=True)
    contacts_updated = fields.Integer(readonly=True)
    progress = fields.Float(compute="_compute_progress")
    chunk_rows = fields.Integer(default=CHUNK_ROWS, readonly=True, help="Rows imported by each background job.")
    error = fields.Text(readonly=True)
    consent_note = fields.Char(readonly=True, help="Recorded with each consent given by this import, as its proof.")
    rejection_ids = fields.One2many("gobysend.contact.import.rejection", "import_id", string="Rejected Rows")
    list_id = fields.Many2one(
        "gobysend.segment",
        string="Add to List",
        readonly=True,
        ondelete="set null",
        help="The list (a static segment) the imported contacts join.",
    )

    def init(self):
        # The chunks of an import's file, planned by its first job: where each starts and ends,
        # whether it is done, what it counted and which contacts it has for the import's list
        # (until they join it). Each chunk writes its own row only, so that chunks running at
        # once never update the same row; a chunk run twice imports its rows once. Engine
        # bookkeeping, never shown.
        self.env.cr.execute(
            """
            CREATE TABLE IF NOT EXISTS gobysend_contact_import_chunk (
                import_id integer NOT NULL REFERENCES gobysend_contact_import (id) ON DELETE CASCADE,
                first_row integer NOT NULL,
                start_offset bigint NOT NULL,
                end_offset bigint NOT NULL,
                done boolean NOT NULL DEFAULT false,
                rows_done integer NOT NULL DEFAULT 0,
                rows_rejected integer NOT NULL DEFAULT 0,
                contacts_created integer NOT NULL DEFAULT 0,
                contacts_updated integer NOT NULL DEFAULT 0,
                list_partner_ids integer[],
                PRIMARY KEY (import_id, first_row)
            )
            """
        )

    @api.depends("rows_done", "rows_total")
    def _compute_progress(self):
        for record in self:
            record.progress = 100.0 * record.rows_done / record.rows_total if record.rows_total else 0.0

    # ------------------------------------------------------------------
    # Starting
    # ------------------------------------------------------------------

    @api.model
    def _max_bytes(self):
        return int(self.env["ir.config_parameter"].sudo().get_param(MAX_BYTES_PARAMETER, DEFAULT_MAX_IMPORT_BYTES))

    @api.model
    def _check_size(self, size):
        limit = self._max_bytes()
        if size > limit:
            raise UserError(
                _(
                    "The file is %(size)s MB; files of up to %(max)s MB can be imported. Split the list into "
                    "smaller files.",
                    size=round(size / 1024 / 1024, 1),
                    max=round(limit / 1024 / 1024, 1),
                )
            )

    @api.model
    def _check_columns(self, workspace, columns):
        """Refuse a mapping that cannot be imported; declare its new attributes with their type."""
        used = [column for column in columns if column["target"] != "ignore"]
        if not any(column["target"] in IDENTIFIER_TARGETS for column in used):
            raise UserError(_("Map a column to the customer ID, the email or the phone: contacts are found by them."))
        seen = {}
        for column in used:
            target = column["target"]
            if target == "attribute":
                key = column.get("key") or ""
                if not KEY_RE.match(key) or key in STANDARD_KEYS:
                    raise UserError(
                        _(
                            "Column “%(column)s”: “%(key)s” is not a valid attribute key; use lowercase letters, "
                            "digits and underscores, starting with a letter.",
                            column=column["header"],
                            key=key,
                        )
                    )
                if column.get("type") not in dict(ATTRIBUTE_TYPE_SELECTION):
                    raise UserError(_("Column “%(column)s”: choose the attribute's type.", column=column["header"]))
                slot = ("attribute", key)
            elif target == "consent":
                if column.get("channel") not in CHANNELS:
                    raise UserError(_("Column “%(column)s”: choose the consent's channel.", column=column["header"]))
                slot = ("consent", column["channel"])
            else:
                slot = (target,)
            if slot in seen:
                raise UserError(
                    _(
                        "Columns “%(first)s” and “%(second)s” fill the same field; ignore one of them.",
                        first=seen[slot],
                        second=column["header"],
                    )
                )
            seen[slot] = column["header"]
        attribute_columns = [column for column in used if column["target"] == "attribute"]
        if not attribute_columns:
            return
        # sudo: the workspace's attribute types, which a member may read but not declare; the
        # tracking API declares new attributes the same way.
        Attribute = self.env["gobysend.attribute"].sudo()
        existing = {
            attribute.key: attribute
            for attribute in Attribute.search(
                [("workspace_id", "=", workspace.id), ("key", "in", [column["key"] for column in attribute_columns])]
            )
        }
        for column in attribute_columns:
            attribute = existing.get(column["key"])
            if attribute and attribute.value_type != column["type"]:
                raise UserError(
                    _(
                        "Column “%(column)s”: the attribute “%(key)s” holds values of type %(type)s already.",
                        column=column["header"],
                        key=column["key"],
                        type=dict(ATTRIBUTE_TYPE_SELECTION)[attribute.value_type],
                    )
                )
        Attribute.create(
            [
                {"workspace_id": workspace.id, "key": column["key"], "value_type": column["type"]}
                for column in attribute_columns
                if column["key"] not in existing
            ]
        )

    @api.model
    def _create_import(self, workspace, file_name, raw, columns, file_format=None, target_list=None):
        """Store the file of a customer list and queue its import. ``file_format`` is the
        (file type, encoding, separator) that ``read_file_head`` found, or found here;
        ``target_list``, a list (static segment) of the workspace the contacts join."""
        self._check_size(len(raw))
        if target_list and (target_list.segment_type != "static" or target_list.workspace_id != workspace):
            raise UserError(
                _(
                    "Contacts can only be imported into a list of the same workspace: “%(list)s” is not one.",
                    list=target_list.display_name,
                )
            )
        if file_format is None:
            file_format = read_file_head(self.env, raw[:HEAD_BYTES] if raw[:2] != b"PK" else raw, file_name)[:3]
        file_type, encoding, separator = file_format
        self._check_columns(workspace, columns)
        record = self.create(
            {
                "name": file_name,
                "workspace_id": workspace.id,
                "file_type": file_type,
                "encoding": encoding,
                "separator": separator,
                "columns": columns,
                "list_id": target_list.id if target_list else False,
            }
        )
        record.consent_note = _(
            "Import of “%(file)s” (no. %(id)s) on %(date)s",
            file=file_name,
            id=record.id,
            date=fields.Date.context_today(record),
        )
        record.attachment_id = self.env["ir.attachment"].create(
            {
                "name": file_name,
                "raw": raw,
                "res_model": self._name,
                "res_id": record.id,
                # Not text/csv: Odoo would copy every word of a text file into the database
                # for search, a hundred megabytes for a million rows.
                "mimetype": "application/octet-stream",
            }
        )
        record.with_delay(
            channel=IMPORT_CHANNEL,
            description=_("Import customer list %(file)s", file=file_name),
        )._plan_chunks()
        return record

    # ------------------------------------------------------------------
    # The background job
    # ------------------------------------------------------------------

    def _open_file(self):
        # sudo: the file of this import, whose record the user may read; the filestore path is
        # readable by administrators only.
        attachment = self.attachment_id.sudo()
        if attachment.store_fname:
            return open(attachment._full_path(attachment.store_fname), "rb")
        return io.BytesIO(attachment.raw or b"")

    def _plan_chunks(self):
        """The import's first job: read the file once to count its rows and split it into
        chunks of ``chunk_rows`` rows, then queue one job per chunk."""
        self.ensure_one()
        if not self.exists() or self.state != "queued":
            return
        try:
            chunks, total = self._split_file()
        except UserError as error:
            self._fail(error)
            return
        self.env.cr.execute(
            """
            INSERT INTO gobysend_contact_import_chunk (import_id, first_row, start_offset, end_offset)
                 SELECT %s, first_row, start_offset, end_offset
                   FROM unnest(%s::int[], %s::bigint[], %s::bigint[]) AS t(first_row, start_offset, end_offset)
            ON CONFLICT DO NOTHING
            """,
            (self.id, [chunk[0] for chunk in chunks], [chunk[1] for chunk in chunks], [chunk[2] for chunk in chunks]),
        )
        self.write({"state": "running", "rows_total": total})
        if not chunks:
            self._finish()
        for first_row, _start, _end, last_row in chunks:
            self.with_delay(
                channel=IMPORT_CHANNEL,
                description=_(
                    "Import customer list %(file)s, rows %(first)s to %(last)s",
                    file=self.name,
                    first=first_row,
                    last=last_row,
                ),
            )._run_chunk(first_row)

    def _split_file(self):
        """Turn an XLSX sheet into CSV (read once, through ``base_import``), then read the file
        as a stream: ([(first row, start byte, end byte, last row)], rows to import). A chunk
        holds ``chunk_rows`` rows with cells; its bounds fall between two CSV records."""
        if self.file_type == "xlsx":
            with self._open_file() as handle:
                raw = handle.read()
            _file_type, _encoding, _separator, rows = read_file_head(self.env, raw, self.name)
            text = io.StringIO()
            csv.writer(text).writerows(rows)
            # sudo: the import's own file, replaced by the same rows in CSV.
            self.attachment_id.sudo().raw = text.getvalue().encode()
            self.write({"file_type": "csv", "encoding": "utf-8", "separator": ","})
        chunks = []
        total = filled = 0
        first = start = None
        number = previous = 0  # the number of the last record read, and the byte after it
        with self._open_file() as handle:
            for row, offset in iter_csv_rows(handle, 0, self.encoding, self.separator):
                number += 1
                if number > 1:  # the first record is the header
                    if first is None:
                        first, start = number, previous
                    if any(cell.strip() for cell in row):
                        filled += 1
                        if filled == self.chunk_rows:
                            chunks.append((first, start, offset, number))
                            total += filled
                            filled, first = 0, None
                previous = offset
        if filled:
            chunks.append((first, start, previous, number))
            total += filled
        return chunks, total

    def _run_chunk(self, first_row):
        """Import the chunk of rows that starts at row ``first_row``, then queue the count of
        the chunks done. The chunk's row stays locked while it runs: the same chunk run twice
        at once waits, then runs again (queue_job retries it) and finds it done."""
        self.ensure_one()
        if not self.exists():
            return
        self.env.cr.execute(
            "SELECT start_offset, end_offset, done FROM gobysend_contact_import_chunk "
            "WHERE import_id = %s AND first_row = %s FOR UPDATE",
            (self.id, first_row),
        )
        chunk = self.env.cr.fetchone()
        if not chunk or chunk[2]:
            return
        if self.state != "running":
            self._release_claims()  # a failed import's: a chunk running meanwhile may have added some
            return
        records = self._read_chunk(first_row, chunk[0], chunk[1])
        try:
            # Nothing of a chunk that fails is kept.
            with self.env.cr.savepoint():
                counts = self._import_rows(records, self.columns)
        except ConcurrentContactCreation as error:
            # The API created one of this chunk's contacts at the same moment: the chunk runs
            # again shortly, on a fresh transaction that sees it.
            raise RetryableJobError(str(error), seconds=5) from error
        except UserError as error:
            self._fail(error)
            return
        self._end_chunk(first_row, len(records), *counts)

    def _read_chunk(self, first_row, start, end):
        """The rows with cells between bytes ``start`` and ``end``: [(row number, cells)]."""
        records = []
        number = first_row
        with self._open_file() as handle:
            for row, offset in iter_csv_rows(handle, start, self.encoding, self.separator):
                if any(cell.strip() for cell in row):
                    records.append((number, row))
                number += 1
                if offset >= end:
                    break
        return records

    def _end_chunk(self, first_row, rows, rejected, created, updated, listed):
        """Mark the chunk done with its counts and the contacts for the import's list, and
        queue the import's progress update. That update is a job of its own: it runs once this
        chunk is committed, so that the update after the last chunk sees every chunk done and
        ends the import. It also puts the contacts in the list: a list's row counts its
        members, and chunks updating it at once would make all but one run again."""
        self.env.cr.execute(
            """
            UPDATE gobysend_contact_import_chunk
               SET done = true, rows_done = %s, rows_rejected = %s, contacts_created = %s, contacts_updated = %s,
                   list_partner_ids = %s
             WHERE import_id = %s AND first_row = %s
            """,
            (rows, rejected, created, updated, (listed or None) if self.list_id else None, self.id, first_row),
        )
        self.with_delay(
            channel=IMPORT_CHANNEL,
            # Before the chunks still waiting (priority 10), so that progress shows as they end.
            priority=5,
            description=_("Count the imported rows of %(file)s", file=self.name),
        )._update_progress()

    def _update_progress(self):
        """Add up the counts of the chunks done; end the import once every chunk is. Safe to
        run twice and at once: it writes sums, not increments, and two updates of the import
        at once make one of them run again (queue_job retries it)."""
        self.ensure_one()
        if not self.exists() or self.state != "running":
            return
        self.env.cr.execute(
            "SELECT first_row, list_partner_ids FROM gobysend_contact_import_chunk "
            "WHERE import_id = %s AND done AND list_partner_ids IS NOT NULL FOR UPDATE",
            (self.id,),
        )
        to_list = self.env.cr.fetchall()
        if to_list:
            if self.list_id:
                # sudo: the import's list, checked to be of its workspace when the import was
                # made; membership rows are written by the engine alone.
                self.list_id.sudo()._change_list_members(add=[i for _row, ids in to_list for i in ids])
            self.env.cr.execute(
                "UPDATE gobysend_contact_import_chunk SET list_partner_ids = NULL "
                "WHERE import_id = %s AND first_row = ANY(%s)",
                (self.id, [first_row for first_row, _ids in to_list]),
            )
        self.env.cr.execute(
            """
            SELECT count(*) FILTER (WHERE NOT done), COALESCE(sum(rows_done), 0), COALESCE(sum(rows_rejected), 0),
                   COALESCE(sum(contacts_created), 0), COALESCE(sum(contacts_updated), 0)
              FROM gobysend_contact_import_chunk
             WHERE import_id = %s
            """,
            (self.id,),
        )
        left, rows, rejected, created, updated = self.env.cr.fetchone()
        self.write(
            {
                "rows_done": rows,
                "rows_rejected": rejected,
                "contacts_created": created,
                "contacts_updated": updated,
            }
        )
        if not left:
            self._finish()

    def _finish(self):
        self.state = "done"
        self._release_claims()
        self.env.cr.execute("DELETE FROM gobysend_contact_import_chunk WHERE import_id = %s", (self.id,))

    def _fail(self, error):
        self.write({"state": "failed", "error": str(error)})
        self._release_claims()

    @fewer_collections()
    def _import_rows(self, records, columns):
        """Identify the contacts of ``records`` ([(row number, cells)]); keep the rejected rows.
        Returns the counts (rejected, created, updated) and the contacts' ids."""
        workspace = self.workspace_id.sudo()  # sudo: the import record's rules gave access to it
        Ingest = self.env["gobysend.ingest"]
        region = workspace._get_phone_region()
        rejected = []  # (row number, reason, cells)
        accepted = []  # (row number, cells, payload, consent, identifiers)
        first_row_of = {}
        # Text PostgreSQL cannot store is looked for once in the whole chunk: mostly there is
        # none. When there is, each row's identifiers are looked at on their own.
        storable = find_nul_character([row for _number, row in records], "") is None
        for number, row in records:
            try:
                payload, consent = row_payload(row, columns)
                ref = Ingest._read_contact_ref(workspace, payload, region=region, checked=storable)
            except RowRejected as error:
                rejected.append((number, str(error), row))
                continue
            except InvalidInput as error:
                rejected.append((number, rejection_reason(error, columns), row))
                continue
            identifiers = [f"{key}:{ref[key]}" for key in IDENTIFIER_TARGETS if ref[key]]
            earlier = next((first_row_of[i] for i in identifiers if i in first_row_of), None)
            if earlier:
                rejected.append((number, self._duplicate_reason(earlier), row))
                continue
            for identifier in identifiers:
                first_row_of[identifier] = number
            accepted.append((number, row, payload, consent, identifiers, ref))
        accepted = self._drop_rows_of_other_chunks(accepted, rejected)
        created = updated = 0
        listed = []
        for start in range(0, len(accepted), IDENTIFY_SLICE):
            rows = accepted[start : start + IDENTIFY_SLICE]
            # Their identifiers are claimed already, by ``_drop_rows_of_other_chunks``.
            results = Ingest.with_context(gobysend_identifiers_claimed=True)._identify_many(
                workspace,
                [entry[2] for entry in rows],
                source="import",
                consents={index: entry[3] for index, entry in enumerate(rows) if entry[3]},
                note=self.consent_note,
                # Read once for the duplicate check: the bulk identify takes them as they are.
                refs={index: entry[5] for index, entry in enumerate(rows)},
            )
            for (number, row, *_rest), result in zip(rows, results, strict=True):
                if isinstance(result, InvalidInput):
                    rejected.append((number, rejection_reason(result, columns), row))
                    continue
                listed.append(result["contact_id"])
                if result["created"]:
                    created += 1
                else:
                    updated += 1
        if rejected:
            # sudo: the rejected rows of this import, which members may read but not write.
            self.env["gobysend.contact.import.rejection"].sudo().create(
                [
                    {
                        "import_id": self.id,
                        "row_number": number,
                        "reason": storable_text(reason),
                        "cells": storable_text(self._cells_text(row)),
                    }
                    for number, reason, row in sorted(rejected, key=lambda rejection: rejection[0])
                ]
            )
        return len(rejected), created, updated, listed

    def _duplicate_reason(self, earlier):
        return _("The same contact as row %(row)s: the file names each contact once.", row=earlier)

    def _drop_rows_of_other_chunks(self, accepted, rejected):
        """Reject the rows whose contact another chunk of the file imports; claim this chunk's.

        Each identifier is claimed in the workspace's contact claims, with the import and the
        row: the claims that make the API's requests creating the same contact collide
        (``gobysend.ingest._claim_new_contacts``), so that the chunk needs no claim of its own
        when it creates its new contacts. A claim of another import, or of the API, is taken
        over; one of this import is another row's. A chunk or a request that claims one of
        them at the same time waits for this one to end, then runs again (on PostgreSQL's
        serialization failure) and finds it taken. Identifiers are claimed in order, so two
        chunks never wait for each other. Of two rows for the same contact, the one whose chunk
        runs first is imported (in file order when chunks run one after the other). Plain SQL:
        one insert per chunk, with ON CONFLICT."""
        if not accepted:
            return accepted
        workspace_id = self.workspace_id.id
        rows = sorted((identifier, entry[0]) for entry in accepted for identifier in entry[4])
        self.env.cr.execute(
            """
            INSERT INTO gobysend_contact_claim AS c (workspace_id, identifier, claimed_at, import_id, row_number)
                 SELECT %s, identifier, now() at time zone 'UTC', %s, row_number
                   FROM unnest(%s::varchar[], %s::int[]) AS t(identifier, row_number)
            ON CONFLICT (workspace_id, identifier) DO UPDATE
                    SET claimed_at = EXCLUDED.claimed_at, import_id = EXCLUDED.import_id,
                        row_number = EXCLUDED.row_number
                  WHERE c.import_id IS DISTINCT FROM EXCLUDED.import_id
              RETURNING identifier
            """,
            (
                workspace_id,
                self.id,
                pg_array([identifier for identifier, _n in rows]),
                pg_array([number for _i, number in rows]),
            ),
        )
        claimed = {identifier for (identifier,) in self.env.cr.fetchall()}
        if len(claimed) == len(rows):
            return accepted
        self.env.cr.execute(
            "SELECT identifier, row_number FROM gobysend_contact_claim "
            "WHERE workspace_id = %s AND identifier = ANY(%s) AND import_id = %s",
            (workspace_id, [identifier for identifier, _n in rows if identifier not in claimed], self.id),
        )
        taken = dict(self.env.cr.fetchall())
        kept = []
        released = []
        for entry in accepted:
            number, row, _payload, _consent, row_identifiers, _ref = entry
            other = next((taken[i] for i in row_identifiers if i in taken), None)
            if other:
                rejected.append((number, self._duplicate_reason(other), row))
                released += [identifier for identifier in row_identifiers if identifier in claimed]
            else:
                kept.append(entry)
        if released:
            # A rejected row's other identifiers stay free for a later row of their own.
            self.env.cr.execute(
                "DELETE FROM gobysend_contact_claim "
                "WHERE workspace_id = %s AND identifier = ANY(%s) AND import_id = %s",
                (workspace_id, released, self.id),
            )
        return kept

    def _release_claims(self):
        """Forget the import's claims: its contacts exist by now, and lookups find them."""
        self.env.cr.execute("DELETE FROM gobysend_contact_claim WHERE import_id = %s", (self.id,))

    @api.model
    def _cells_text(self, row):
        text = io.StringIO()
        csv.writer(text).writerow(row)
        return text.getvalue().rstrip("\r\n")

    # ------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------

    def _rejections_csv(self):
        """The rejected rows as CSV: row number, reason, then the row's own cells."""
        self.ensure_one()
        text = io.StringIO()
        writer = csv.writer(text)
        headers = [column["header"] for column in sorted(self.columns or [], key=lambda column: column["index"])]
        writer.writerow([_("Row"), _("Reason"), *headers])
        for rejection in self.rejection_ids:
            cells = next(csv.reader([rejection.cells or ""]), [])
            writer.writerow([rejection.row_number, rejection.reason, *cells])
        return text.getvalue().encode("utf-8-sig")

    def action_download_rejections(self):
        self.ensure_one()
        if not self.rejection_ids:
            raise UserError(_("No row of this file was rejected."))
        attachment = self.env["ir.attachment"].create(
            {
                "name": _("Rejected rows of %(file)s.csv", file=self.name.rsplit(".", 1)[0]),
                "raw": self._rejections_csv(),
                "mimetype": "text/csv",
                "res_model": self._name,
                "res_id": self.id,
            }
        )
        return {"type": "ir.actions.act_url", "url": f"/web/content/{attachment.id}?download=true", "target": "self"}

    def action_view_contacts(self):
        self.ensure_one()
        return self.workspace_id.action_view_subscriptions()


class GobysendContactImportRejection(models.Model):
    _name = "gobysend.contact.import.rejection"
    _description = "Gobysend Contact Import Rejected Row"
    _order = "import_id, row_number"

    import_id = fields.Many2one("gobysend.contact.import", required=True, ondelete="cascade", index=True)
    workspace_id = fields.Many2one(related="import_id.workspace_id", store=True, index=True)
    row_number = fields.Integer(string="Row", required=True)
    reason = fields.Char(required=True)
    cells = fields.Char(string="Row Content")
