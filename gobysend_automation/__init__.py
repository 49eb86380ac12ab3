from odoo.tools import SQL

from . import models
from . import routers
from . import controllers
from . import wizards
from .models.res_partner import OWN_ENTITY_TRIGGER, PARTNER_LOOKUP_INDEXES


def uninstall_hook(env):
    """Leave Odoo's contacts table as it was before installation: the trigger and the lookup
    indexes that ``res.partner.init`` added to it are not Odoo's, and uninstalling removes only
    the columns of an addon."""
    env.cr.execute(
        SQL(
            "DROP TRIGGER IF EXISTS %s ON res_partner; DROP FUNCTION IF EXISTS %s()",
            SQL.identifier(OWN_ENTITY_TRIGGER),
            SQL.identifier(OWN_ENTITY_TRIGGER),
        )
    )
    for index in PARTNER_LOOKUP_INDEXES.values():
        env.cr.execute(SQL("DROP INDEX IF EXISTS %s", SQL.identifier(index)))
