"""The records noted for campaigns name their campaign by number only (``gobysend.record.entry``):
the database no longer checks that reference, which locked the campaign's row in every writer's
transaction."""


def migrate(cr, version):
    if not version:
        return
    cr.execute("ALTER TABLE gobysend_record_entry DROP CONSTRAINT IF EXISTS gobysend_record_entry_campaign_id_fkey")
    cr.execute("DELETE FROM ir_model_constraint WHERE name = 'gobysend_record_entry_campaign_id_fkey' AND type = 'f'")
