"""Move the Zalo tokens from the channel's columns to gobysend.provider.token.

Before 18.0.1.1.0 the tokens were stored on gobysend_channel; they are now renewed in a
transaction of their own, in a table of their own. Odoo keeps the old columns of fields that
are no longer stored, so they can be read here once.
"""


def migrate(cr, version):
    cr.execute(
        """
        SELECT count(*) FROM information_schema.columns
         WHERE table_name = 'gobysend_channel'
           AND column_name IN ('zalo_access_token', 'zalo_refresh_token', 'zalo_token_expires_at')
        """
    )
    if cr.fetchone()[0] != 3:
        return
    # One statement for every channel, in SQL: the ORM no longer sees these columns.
    cr.execute(
        """
        INSERT INTO gobysend_provider_token (channel_id, access_token, refresh_token, expires_at,
                                             create_uid, create_date, write_uid, write_date)
        SELECT id, zalo_access_token, zalo_refresh_token, zalo_token_expires_at,
               1, now() at time zone 'UTC', 1, now() at time zone 'UTC'
          FROM gobysend_channel
         WHERE zalo_access_token IS NOT NULL OR zalo_refresh_token IS NOT NULL
        ON CONFLICT (channel_id) DO NOTHING
        """
    )
