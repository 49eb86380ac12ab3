import re

from markupsafe import Markup, escape

from odoo import _, api, fields, models
from odoo.exceptions import UserError

from ..exceptions import InvalidInput
from ..models.gobysend_attribute import ATTRIBUTE_TYPE_SELECTION, KEY_RE, STANDARD_KEYS
from ..models.gobysend_consent_log import CHANNEL_SELECTION
from ..models.gobysend_contact_import import (
    COLUMN_TARGETS,
    FALSE_WORDS,
    HEAD_BYTES,
    IDENTIFIER_TARGETS,
    PREVIEW_ROWS,
    TRUE_WORDS,
    RowRejected,
    read_file_head,
    rejection_reason,
    row_payload,
)
from ..tools import ISO_DATE_RE, ISO_DATETIME_RE, storable_text

# Headers read as a contact field, lowercased, spaces and dashes as underscores.
HEADER_TARGETS = {
    "id": "id",
    "customer_id": "id",
    "client_id": "id",
    "external_id": "id",
    "email": "email",
    "e_mail": "email",
    "email_address": "email",
    "phone": "phone",
    "mobile": "phone",
    "phone_number": "phone",
    "telephone": "phone",
    "name": "name",
    "full_name": "name",
    "city": "city",
    "birthday": "birthday",
    "date_of_birth": "birthday",
    "country": "country_code",
    "country_code": "country_code",
    "language": "language",
    "lang": "language",
}
CONSENT_HEADER_RE = re.compile(r"^(?:consent_)?(email|sms|zalo|push)(?:_consent)?$")


def header_key(header):
    key = re.sub(r"[^a-z0-9]+", "_", (header or "").strip().lower()).strip("_")
    if key and not key[0].isalpha():
        key = f"a_{key}"
    return key[:63]


def guess_type(samples):
    samples = [sample.strip() for sample in samples if sample and sample.strip()]
    if not samples:
        return "string"
    if all(sample.lower() in TRUE_WORDS | FALSE_WORDS for sample in samples) and not all(
        sample in ("0", "1") for sample in samples
    ):
        return "boolean"
    try:
        [float(sample) for sample in samples]
        return "number"
    except ValueError:
        pass
    if all(ISO_DATE_RE.match(sample) for sample in samples):
        return "date"
    if all(ISO_DATETIME_RE.match(sample) for sample in samples):
        return "datetime"
    return "string"


class GobysendContactImportWizard(models.TransientModel):
    """Import a customer list (CSV or XLSX) into a workspace: read its columns, map them to
    contact fields, attributes and consent, preview the first rows, then import in the
    background."""

    _name = "gobysend.contact.import.wizard"
    _description = "Import Gobysend Contacts"

    workspace_id = fields.Many2one(
        "gobysend.workspace", required=True, ondelete="cascade", domain="[('member_ids', 'in', uid)]"
    )
    file = fields.Binary(string="Customer List", required=True, help="A CSV or XLSX file with a header row.")
    file_name = fields.Char()
    file_type = fields.Char(readonly=True)
    encoding = fields.Char(readonly=True)
    separator = fields.Char(readonly=True)
    column_ids = fields.One2many("gobysend.contact.import.wizard.column", "wizard_id", string="Columns")
    list_id = fields.Many2one(
        "gobysend.segment",
        string="Add to List",
        domain="[('workspace_id', '=', workspace_id), ('segment_type', '=', 'static')]",
        help="Optional: a list (a static segment) of the workspace the imported contacts join.",
    )
    preview_html = fields.Html(string="Preview", compute="_compute_preview_html", sanitize=False)

    def _file_attachment(self):
        # sudo: this wizard's own uploaded file, stored as an attachment of the wizard.
        return (
            self.env["ir.attachment"]
            .sudo()
            .search(
                [("res_model", "=", self._name), ("res_id", "=", self._origin.id), ("res_field", "=", "file")],
                limit=1,
            )
        )

    def _read_head(self):
        """The file's first rows (file type, encoding, separator, rows), after checking its size
        on the stored file: nothing reads a file over the limit."""
        attachment = self._file_attachment()
        if not attachment:
            if self.file_name:  # a file of no bytes at all is stored as no file
                raise UserError(_("The file is empty."))
            raise UserError(_("Choose the file to import first."))
        self.env["gobysend.contact.import"]._check_size(attachment.file_size)
        if attachment.store_fname:
            with open(attachment._full_path(attachment.store_fname), "rb") as handle:
                head = handle.read(HEAD_BYTES)
                if head[:2] == b"PK":  # a zip container (XLSX) is read whole
                    head += handle.read()
        else:
            head = attachment.raw
        return read_file_head(self.env, head, self.file_name)

    def action_read_columns(self):
        """Read the file's header and first rows, and propose a mapping for each column."""
        self.ensure_one()
        self.workspace_id.check_access("read")
        file_type, encoding, separator, rows = self._read_head()
        # Shown back and stored: the file's text without what PostgreSQL cannot store.
        headers = [storable_text(header) for header in rows[0]]
        samples = [[storable_text(cell) for cell in row] for row in rows[1 : 1 + PREVIEW_ROWS]]
        known = {
            attribute.key: attribute.value_type
            for attribute in self.env["gobysend.attribute"].search([("workspace_id", "=", self.workspace_id.id)])
        }
        lines = []
        taken = set()
        for index, header in enumerate(headers):
            key = header_key(header)
            values = [row[index] for row in samples if index < len(row)]
            line = {"index": index, "header": header or _("Column %(number)s", number=index + 1)}
            line["sample"] = ", ".join(value for value in values[:3] if value)[:200]
            consent = CONSENT_HEADER_RE.match(key)
            target = HEADER_TARGETS.get(key)
            if target and target not in taken:
                line["target"] = target
                taken.add(target)
            elif consent and ("consent", consent.group(1)) not in taken:
                line.update(target="consent", channel=consent.group(1))
                taken.add(("consent", consent.group(1)))
            elif KEY_RE.match(key) and key not in STANDARD_KEYS:
                line.update(target="attribute", attribute_key=key, attribute_type=known.get(key) or guess_type(values))
            else:
                line["target"] = "ignore"
            lines.append(line)
        self.column_ids.unlink()
        self.write(
            {
                "file_type": file_type,
                "encoding": encoding,
                "separator": separator,
                "column_ids": [fields.Command.create(line) for line in lines],
            }
        )
        return self._reopen()

    def _reopen(self):
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
            "name": _("Import Contacts"),
        }

    def _columns(self):
        return [
            {
                "index": line.index,
                "header": line.header,
                "target": line.target,
                "key": line.attribute_key if line.target == "attribute" else None,
                "type": line.attribute_type if line.target == "attribute" else None,
                "channel": line.channel if line.target == "consent" else None,
            }
            for line in self.column_ids
        ]

    def _preview_rows(self):
        """[(row number, cells, reason or None)] of the first rows, checked as the import will."""
        _file_type, _encoding, _separator, rows = self._read_head()
        columns = [column for column in self._columns() if column["target"] != "ignore"]
        workspace = self.workspace_id.sudo()  # sudo: read access was checked; the API's own reading
        Ingest = self.env["gobysend.ingest"]
        # The import declares the mapped attributes with these types before its first row.
        known = {column["key"]: column["type"] for column in columns if column["target"] == "attribute"}
        region = workspace._get_phone_region()
        preview = []
        first_row_of = {}
        for number, row in enumerate(rows[1 : 1 + PREVIEW_ROWS], start=2):
            reason = None
            try:
                payload, _consent = row_payload(row, columns)
                item = Ingest._read_identify(workspace, payload, known, region)
                identifiers = [i for i in item["identifiers"] if i.split(":", 1)[0] in IDENTIFIER_TARGETS]
                earlier = next((first_row_of[i] for i in identifiers if i in first_row_of), None)
                if earlier:
                    reason = _("The same contact as row %(row)s: the file names each contact once.", row=earlier)
                for identifier in identifiers:
                    first_row_of.setdefault(identifier, number)
            except RowRejected as error:
                reason = str(error)
            except InvalidInput as error:
                reason = rejection_reason(error, columns)
            preview.append((number, row, reason))
        return rows[0], preview

    @api.depends("column_ids", "column_ids.target", "column_ids.attribute_key", "column_ids.attribute_type")
    def _compute_preview_html(self):
        for wizard in self:
            wizard.preview_html = False
            if not wizard.column_ids or not wizard._origin.id:
                continue
            try:
                html = wizard._preview_table(*wizard._preview_rows())
            except UserError as error:
                html = Markup("<p class='text-danger'>%s</p>") % str(error)
            # The file's text as it is shown back: a NUL character is not left invisible.
            wizard.preview_html = Markup(storable_text(html))

    def _preview_table(self, headers, preview):
        head = Markup("").join(Markup("<th>%s</th>") % header for header in headers)
        body = Markup("")
        for number, row, reason in preview:
            status = (
                Markup("<td class='text-danger'>%s</td>") % reason
                if reason
                else Markup("<td class='text-success'>%s</td>") % _("OK")
            )
            cells = Markup("").join(Markup("<td>%s</td>") % escape(cell) for cell in row)
            body += Markup("<tr><td>%s</td>%s%s</tr>") % (number, status, cells)
        return Markup(
            "<table class='table table-sm o_gobysend_import_preview'><thead><tr><th>%s</th><th>%s</th>%s</tr>"
            "</thead><tbody>%s</tbody></table>"
        ) % (_("Row"), _("Check"), head, body)

    def action_import(self):
        """Queue the import and open its progress."""
        self.ensure_one()
        self.workspace_id.check_access("read")
        if not self.column_ids:
            self.action_read_columns()
        attachment = self._file_attachment()
        Import = self.env["gobysend.contact.import"]
        Import._check_size(attachment.file_size)
        record = Import._create_import(
            self.workspace_id,
            self.file_name or _("customers.csv"),
            attachment.raw,
            self._columns(),
            file_format=(self.file_type, self.encoding, self.separator),
            target_list=self.list_id,
        )
        return {
            "type": "ir.actions.act_window",
            "res_model": record._name,
            "res_id": record.id,
            "view_mode": "form",
            "target": "current",
            "name": record.name,
        }


class GobysendContactImportWizardColumn(models.TransientModel):
    _name = "gobysend.contact.import.wizard.column"
    _description = "Import Gobysend Contacts: Column"
    _order = "index"

    wizard_id = fields.Many2one("gobysend.contact.import.wizard", required=True, ondelete="cascade")
    index = fields.Integer(readonly=True)
    header = fields.Char(string="Column", readonly=True)
    sample = fields.Char(string="First Values", readonly=True)
    target = fields.Selection(COLUMN_TARGETS, string="Import As", required=True, default="ignore")
    attribute_key = fields.Char(string="Attribute Key")
    attribute_type = fields.Selection(ATTRIBUTE_TYPE_SELECTION, string="Attribute Type", default="string")
    channel = fields.Selection(CHANNEL_SELECTION, string="Consent Channel")
