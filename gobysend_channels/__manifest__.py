# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
{
    "name": "Gobysend Channels",
    "summary": "SMS, Zalo OA, push, Slack, chat bot and webhook providers for Gobysend",
    "version": "18.0.1.1.0",
    "category": "Marketing",
    "website": "https://github.com/gobysend/gobysend-odoo",
    "author": "Gobysend",
    "license": "LGPL-3",
    "installable": True,
    "depends": ["gobysend_automation"],
    "external_dependencies": {"python": ["requests", "cryptography", "phonenumbers"]},
    "data": [
        "security/ir.model.access.csv",
        "views/gobysend_channel_views.xml",
    ],
    "post_init_hook": "post_init_hook",
}
