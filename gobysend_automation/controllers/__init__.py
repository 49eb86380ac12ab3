from . import consent
from . import tracking
from . import campaign_webhook
from . import workflow_export
