"""Subscriptions are no longer indexed by workspace alone nor by customer id alone: the unique
indexes on (workspace, contact) and (workspace, customer id) serve those searches, and each
index cost every subscription written an entry."""


def migrate(cr, version):
    if not version:
        return
    cr.execute("DROP INDEX IF EXISTS gobysend_subscription__workspace_id_index")
    cr.execute("DROP INDEX IF EXISTS gobysend_subscription__external_id_index")
