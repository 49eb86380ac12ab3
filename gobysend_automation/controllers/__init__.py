from . import consent
from . import tracking
