from . import gobysend_api_key_wizard
from . import gobysend_send_message_wizard
from . import gobysend_token_top_up_wizard
from . import gobysend_campaign_test_wizard
from . import gobysend_campaign_add_wizard
from . import gobysend_contact_import_wizard
from . import gobysend_campaign_template_wizard
from . import gobysend_list_members_wizard
