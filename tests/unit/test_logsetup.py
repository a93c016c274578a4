"""tests/logsetup.py: a test that sets Canopy's logging up (as ``canopy run`` does, on a stream closed when the test
ends) leaves nothing of it to the tests after it."""

import io
import logging
import warnings

from controller import logs
from tests.logsetup import logging_put_back


def test_a_tests_logging_set_up_is_put_back_after_it(capsys):
    root, canopy = logging.getLogger(), logging.getLogger("canopy")
    before = (list(root.handlers), root.level, logging.lastResort, canopy.level, canopy.propagate)
    stream = io.StringIO()
    with logging_put_back():
        logs.setup("debug", "text", stream)
        assert root.level == logging.DEBUG and logging.lastResort.stream is stream  # it was set up
        canopy.propagate = False
    stream.close()  # as capsys closes its stream when its test ends
    assert (list(root.handlers), root.level, logging.lastResort, canopy.level, canopy.propagate) == before
    logging.getLogger("canopy.test").error("a record after the test")  # (a handler left behind fails to write it)
    assert "Logging error" not in capsys.readouterr().err


def test_warnings_sent_to_logging_by_a_tests_set_up_go_back_to_the_warnings_module_after_it():
    logging.captureWarnings(False)  # as before any set-up
    with logging_put_back():
        logs.setup("info", "text", io.StringIO())
        assert logging._warnings_showwarning is not None  # setup switched it on
    assert logging._warnings_showwarning is None and warnings.showwarning is not logging._showwarning
