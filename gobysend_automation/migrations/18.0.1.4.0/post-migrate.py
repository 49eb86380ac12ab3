"""Attribute values read their workspace through their attribute instead of storing a copy,
are no longer indexed by attribute alone (the unique index on attribute and contact serves
that search), and keep when they changed but not who created or changed them. Consent
records, written once, no longer have a last writer. The columns left behind (with their
foreign keys and indexes) and the index would be kept up to date by nothing but cost every
row written: they go."""


def migrate(cr, version):
    if not version:
        return
    cr.execute(
        """
        ALTER TABLE gobysend_attribute_value DROP COLUMN IF EXISTS workspace_id, DROP COLUMN IF EXISTS create_uid,
                                             DROP COLUMN IF EXISTS create_date, DROP COLUMN IF EXISTS write_uid
        """
    )
    cr.execute("DROP INDEX IF EXISTS gobysend_attribute_value__attribute_id_index")
    cr.execute("ALTER TABLE gobysend_consent_log DROP COLUMN IF EXISTS write_uid, DROP COLUMN IF EXISTS write_date")
