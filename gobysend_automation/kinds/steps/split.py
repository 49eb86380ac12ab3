import hashlib
import string

from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)


def parse_shares(text):
    """The integer shares of ``text`` ("50,50"), or None when it cannot be read."""
    try:
        shares = [int(part) for part in (text or "").replace(" ", "").split(",") if part]
    except ValueError:
        return None
    return shares


@register(STEPS)
class RandomSplitStep(StepKind):
    """Sends each journey down one of the branches A, B, C… at random, in the given shares. The
    draw is a hash of the journey and the step: the same journey always takes the same branch,
    however often the step is asked."""

    key = "split"
    label = _lt("Random split")
    icon = "fa-random"
    sequence = 40
    fields = ("split_shares",)

    def branch_labels(self, step):
        shares = parse_shares(step.split_shares) or []
        return tuple(string.ascii_uppercase[: len(shares)])

    def validate(self, step):
        shares = parse_shares(step.split_shares)
        if (
            not shares
            or len(shares) < 2
            or len(shares) > 26
            or any(share <= 0 for share in shares)
            or sum(shares) != 100
        ):
            raise ValidationError(
                step.env._(
                    "Step “%(step)s”: the shares must be two or more positive percentages adding up to 100, "
                    "e.g. 50,50 or 20,30,50.",
                    step=step.display_name,
                )
            )

    def summary(self, step):
        return " / ".join(
            f"{label} {share}%"
            for label, share in zip(self.branch_labels(step), parse_shares(step.split_shares) or [], strict=False)
        )

    def run(self, batch, step, rows):
        shares = parse_shares(step.split_shares)
        labels = self.branch_labels(step)
        outcomes = []
        for row in rows:
            digest = hashlib.blake2b(f"{row.id}:{step.id}".encode(), digest_size=8).digest()
            draw = int.from_bytes(digest, "big") % 100
            total = 0
            for label, share in zip(labels, shares, strict=True):
                total += share
                if draw < total:
                    outcomes.append(Outcome.done(label))
                    break
        return outcomes
