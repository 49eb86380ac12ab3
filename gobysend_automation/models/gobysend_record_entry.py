from odoo import fields, models


class GobysendRecordEntry(models.Model):
    """A record that fired a campaign, noted by the writer's transaction, waiting for the engine.

    A record trigger costs the writer (a salesperson saving a lead, a sales order being confirmed)
    one insert here, made just before its transaction commits: which record, created or changed,
    the watched fields that changed and their earlier values. The engine's advancing job then
    turns the notes into journeys in its own transactions: it checks what the campaign's author
    may see, finds or brings in the contact and takes the record's values for the templates
    (``kinds/triggers/record_entries.py``). A note leaves the table in the transaction that
    starts its journey, so none is lost or started twice.
    """

    _name = "gobysend.record.entry"
    _description = "Gobysend Record Waiting to Start a Journey"
    _log_access = False
    _order = "id"

    # A plain number, not a reference the database checks: checking it would take a share lock
    # on the campaign's row in every writer's transaction, a write to that row each time and
    # shared lock lists when many writers save at once.
    # The engine skips and removes the notes of a campaign deleted meanwhile (``enter_noted``).
    campaign_id = fields.Integer(required=True, readonly=True, help="The campaign the record fired.")
    writer_uid = fields.Integer(readonly=True, help="The user whose change fired the campaign (``uid`` in filters).")
    res_model = fields.Char(required=True, readonly=True)
    res_id = fields.Integer(required=True, readonly=True)
    created = fields.Boolean(readonly=True)
    old_values = fields.Json(readonly=True, help="The watched fields' values before the change.")
    changes = fields.Json(readonly=True, help="The watched fields that changed.")
    noted_at = fields.Datetime(required=True, readonly=True)
