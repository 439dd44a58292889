import os
import sys

import pytest

ANALYTICS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ANALYTICS not in sys.path:
    sys.path.insert(0, ANALYTICS)


@pytest.fixture(scope="session")
def spark():
    import kpi_job

    s = kpi_job.build_spark(app="flumen-analytics-tests", log_level="ERROR")
    yield s
    s.stop()
