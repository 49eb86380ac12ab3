"""Consent records read their workspace and contact through their subscription instead of
storing copies. The copies' columns (with their foreign keys and index) would stay behind,
filled for old records and empty for new ones: they go."""


def migrate(cr, version):
    if not version:
        return
    cr.execute(
        """
        ALTER TABLE gobysend_consent_log DROP COLUMN IF EXISTS workspace_id, DROP COLUMN IF EXISTS partner_id
        """
    )
