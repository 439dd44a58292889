import os
import sys

import pytest

ANALYTICS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ANALYTICS not in sys.path:
    sys.path.insert(0, ANALYTICS)


@pytest.fixture(scope="session")
def spark():
    import kpi_job

    # scripts/test runs these beside the testbed, whose HADOOP_CONF_DIR would make plain local
    # paths mean HDFS; the unit tests use local files, and hdfs:// URIs still work explicitly.
    s = kpi_job.build_spark(app="flumen-analytics-tests", log_level="ERROR",
                            extra_conf={"spark.hadoop.fs.defaultFS": "file:///"})
    yield s
    s.stop()


def local_env():
    """The environment for CLI subprocesses of unit tests: no testbed HDFS defaults."""
    env = dict(os.environ)
    env.pop("HDFS_URL", None)
    env.pop("HADOOP_CONF_DIR", None)
    return env
