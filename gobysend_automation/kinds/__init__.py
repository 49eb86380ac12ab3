"""The kinds of trigger and step of the journey engine, in one registry.

A campaign starts journeys through its trigger kind and runs them through a tree of steps; each
kind is one class registered here with its metadata (label, icon, the campaign or step fields it
uses, the parents it may follow, whether it waits for an event and expires). The registry drives
the selections of ``gobysend.campaign.trigger_kind`` and ``gobysend.campaign.step.kind``, their
validation and the forms: adding a kind is adding one file to ``triggers/`` or ``steps/``, which
is imported on its own (see ``_load``).
"""

import datetime
import importlib
import pkgutil

TRIGGERS = {}
STEPS = {}


class Outcome:
    """What running a step did to one journey: ``done`` (go on, along ``branch`` when the step
    has branches), ``wait`` (run the step again at ``until``), ``exit`` or ``fail``."""

    __slots__ = ("action", "branch", "message_id", "reason", "until")

    def __init__(self, action, branch=None, until=None, reason=None, message_id=None):
        self.action = action
        self.branch = branch
        self.until = until
        self.reason = reason
        self.message_id = message_id

    @classmethod
    def done(cls, branch=None, message_id=None, reason=None):
        return cls("done", branch=branch, message_id=message_id, reason=reason)

    @classmethod
    def wait(cls, until):
        return cls("wait", until=until)

    @classmethod
    def exit(cls, reason=None):
        return cls("exit", reason=reason)

    @classmethod
    def fail(cls, reason):
        return cls("fail", reason=reason)

    def __repr__(self):
        return f"<Outcome {self.action} {self.branch or ''} {self.until or ''} {self.reason or ''}>"


class Kind:
    """Metadata shared by trigger and step kinds."""

    key = None
    label = None  # a lazy translation (``_lt``)
    icon = "fa-circle"
    sequence = 10
    # Fields of the campaign (trigger) or step (step) this kind uses: the form shows them.
    fields = ()
    help = None

    def validate(self, record):
        """Raise ``ValidationError`` with a sentence naming what is wrong with ``record``."""


class TriggerKind(Kind):
    """How journeys of a campaign start."""

    # The audience (segments, tags, contact filter) is evaluated at launch or at each run.
    uses_audience = False
    # Started by a change of a record of a chosen model (the campaign owns a base.automation).
    record_based = False
    # A manual launch runs once over the audience and is done when its journeys are.
    ends_by_itself = False

    def activate(self, campaign):
        """The campaign starts running (launch, resume): set up what fires it."""

    def deactivate(self, campaign):
        """The campaign stops running (pause, cancel, done, archive)."""

    def launch(self, campaign):
        """Called by *Launch* once the campaign runs: start what runs at once (a fan-out)."""


class StepKind(Kind):
    """What a journey does at one step of the tree."""

    # Labels of the branches the step's children hang on; () when the journey simply goes on.
    branches = ()
    # What people read for a branch where its label is a key ({label: lazy translation}).
    branch_names = {}
    # Kinds of parent step this kind may follow (None: any, or the top of the workflow).
    allowed_parents = None
    waits_for_event = False
    expires = False
    # Ends the journey (nothing may follow it).
    terminal = False
    # Costs tokens (sends a message): counted in the campaign's estimate.
    sends = False

    def run(self, batch, step, rows):
        """Run ``step`` for the journeys ``rows`` (``JourneyRow``) of ``batch``
        (``journeys.JourneyBatch``) and return one ``Outcome`` per row, in order."""
        raise NotImplementedError

    def summary(self, step):
        """One line describing ``step`` in the workflow."""
        return str(self.label)

    def branch_labels(self, step):
        """The branches of ``step`` (a random split has as many as its shares)."""
        return self.branches

    def branch_name(self, env, label):
        """``label``'s branch as people read it, in ``env``'s language."""
        name = self.branch_names.get(label)
        return env._(name) if name else label


def register(registry):
    def decorator(cls):
        registry[cls.key] = cls()
        return cls

    return decorator


def selection(registry):
    return [(key, kind.label) for key, kind in sorted(registry.items(), key=lambda item: item[1].sequence)]


def trigger_selection(_model=None):
    return selection(TRIGGERS)


def step_selection(_model=None):
    return selection(STEPS)


def _load():
    for package in ("triggers", "steps"):
        module = importlib.import_module(f"{__name__}.{package}")
        for info in pkgutil.iter_modules(module.__path__):
            importlib.import_module(f"{module.__name__}.{info.name}")


ZERO = datetime.timedelta(0)

_load()
