"""`fastxent bench`: workloads, timing and the peers fastxent is compared with."""

from fastxent._bench.suite import *  # noqa: F401,F403  (temporary: split in progress)
