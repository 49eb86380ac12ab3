from odoo import fields, models

from .gobysend_subscription import ALL_CHANNELS, CONSENT_SOURCES, CONSENT_STATES

CHANNEL_SELECTION = [("email", "Email"), ("sms", "SMS"), ("zalo", "Zalo"), ("push", "Push")]


class GobysendConsentLog(models.Model):
    """Append-only proof of every consent change: what changed, when, from where and how."""

    _name = "gobysend.consent.log"
    _description = "Gobysend Consent Record"
    _order = "create_date desc, id desc"
    # Written once and never changed: a record says who made it and when, as Odoo's access
    # log would, without the last writer that log adds (it cost each record a foreign-key
    # check, and an import writes a record or more per contact).
    _log_access = False

    create_date = fields.Datetime(string="Created on", readonly=True, default=lambda self: self.env.cr.now())
    create_uid = fields.Many2one("res.users", string="Created by", readonly=True, default=lambda self: self.env.uid)

    subscription_id = fields.Many2one("gobysend.subscription", required=True, ondelete="cascade", index=True)
    # The subscription's, read through it rather than stored: a record goes with its
    # subscription (cascade), so copies could only ever hold the same, and each stored copy
    # cost every new record a foreign-key check (an import writes a record or more per contact).
    workspace_id = fields.Many2one(related="subscription_id.workspace_id")
    partner_id = fields.Many2one(related="subscription_id.partner_id", string="Contact")
    # "All channels" is the record of a subscription that starts in the same state on every
    # channel; each change after that concerns one channel.
    channel = fields.Selection([*CHANNEL_SELECTION, (ALL_CHANNELS, "All channels")], required=True)
    state = fields.Selection(CONSENT_STATES, required=True)
    source = fields.Selection(CONSENT_SOURCES, required=True)
    ip_address = fields.Char(string="IP Address")
    note = fields.Char()
