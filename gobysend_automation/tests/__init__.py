from . import test_api
from . import test_ingest
from . import test_workspace
from . import test_consent
from . import test_ui
from . import test_outbox
from . import test_segment
from . import test_segment_incremental
