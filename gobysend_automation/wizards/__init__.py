from . import gobysend_api_key_wizard
