"""Attribute values read their workspace through their attribute instead of storing a copy,
and are no longer indexed by attribute alone (the unique index on attribute and contact
serves that search). The copy's column (with its foreign key and index) and the index would
stay behind, kept up to date by nothing but costing every value written: they go."""


def migrate(cr, version):
    if not version:
        return
    cr.execute("ALTER TABLE gobysend_attribute_value DROP COLUMN IF EXISTS workspace_id")
    cr.execute("DROP INDEX IF EXISTS gobysend_attribute_value__attribute_id_index")
