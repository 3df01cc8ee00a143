"""The Python client is imported from its source tree (clients/python/src), as CI installs it."""

import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "clients" / "python" / "src"
if str(SOURCE) not in sys.path:
    sys.path.insert(0, str(SOURCE))
