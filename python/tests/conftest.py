import os
import sys

# Tests run against the source tree's package (python/) and the library named
# by SAMOYEDS_LIBRARY (ctest passes the one it built), or, with
# SAMOYEDS_TEST_INSTALLED=1, against the package pip installed.
if not os.environ.get("SAMOYEDS_TEST_INSTALLED"):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
