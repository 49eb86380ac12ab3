from odoo import fields, models


class MailMail(models.Model):
    _inherit = "mail.mail"

    gobysend_message_id = fields.Many2one("gobysend.message", index="btree_not_null", ondelete="set null")
