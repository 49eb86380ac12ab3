from . import models
from . import routers
from . import controllers
from . import wizards
