"""Moves Python's clock in every process of a test run when ``GOBYSEND_TEST_CLOCK`` is set.

``setup/run-tests`` puts this directory on ``PYTHONPATH`` for such a run. Python imports
``sitecustomize`` as it starts, so the test runner, the Odoo servers that the end-to-end tests
start and the dispatchers they spawn all move by the same amount: ``GOBYSEND_TEST_CLOCK`` (UTC,
"YYYY-MM-DD HH:MM:SS") was the time at the real moment ``GOBYSEND_TEST_CLOCK_SINCE`` (epoch
seconds, set by the first process and inherited by the others), and the clock runs on from
there. PostgreSQL's clock is not moved, so a test or a piece of code that mixes the two fails.

``time_machine`` moves the wall clock (``time.time``, ``datetime.now``...) inside the C
functions themselves, so classes stay what they are (``freezegun`` replaces ``datetime.date``,
which breaks the libraries that subclass it at import) and the tests' own ``freeze_time`` still
nests inside. Monotonic clocks, which time-outs use, are left alone. Debian's libfaketime would
move any program's clock, but its 0.9.10 breaks Python 3.11: ``time.sleep`` fails with EINVAL
when the monotonic clock is left alone, and lock time-outs wait for the moved deadline when not.
"""

import datetime
import os
import time

_moment = os.environ.get("GOBYSEND_TEST_CLOCK")
if _moment:
    import time_machine

    _since = float(os.environ.setdefault("GOBYSEND_TEST_CLOCK_SINCE", repr(time.time())))
    _moved = datetime.datetime.fromisoformat(_moment).replace(tzinfo=datetime.UTC)
    time_machine.travel(_moved + datetime.timedelta(seconds=time.time() - _since), tick=True).start()
