"""The bench is run as ``PYTHONPATH=bench python -m carebridge_bench`` (it is not a workspace
package): its tests put the same directory on the path."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = str(Path(__file__).resolve().parent.parent)
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)
