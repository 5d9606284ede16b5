"""Test settings: the real settings, in a throw-away data directory per test run.

The SQLite test database is a file so that the real console started by the browser tests (a
subprocess) sees the rows the tests create.
"""

import os
import tempfile

os.environ.setdefault("STEWARD_HOME", tempfile.mkdtemp(prefix="steward-test-"))
os.environ.setdefault("STEWARD_DEBUG", "0")
# Redis keys of this test run only (broker queues and channel layer), inherited by the consoles
# and workers the tests start: nothing left over from another run can take this run's tasks.
os.environ.setdefault("STEWARD_REDIS_PREFIX", f"steward-test-{os.getpid()}")

from console.settings import *  # noqa: E402,F403
from console.settings import DATABASES, STEWARD_HOME  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": str(STEWARD_HOME / "test-db.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
