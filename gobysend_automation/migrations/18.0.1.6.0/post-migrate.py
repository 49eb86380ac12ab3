"""An import's chunks claim the identifiers of their rows in the workspace's contact claims,
which ``gobysend.ingest`` gives the import and row columns; the import's own key table goes.
An import running across the upgrade checks its later rows against the claims made after it."""


def migrate(cr, version):
    if not version:
        return
    cr.execute("DROP TABLE IF EXISTS gobysend_contact_import_key")
