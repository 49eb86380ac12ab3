from . import tracking
from . import inapp
