"""The transfer saga's stores and runs on the embedded emulators (DynamoDB Local)."""

from __future__ import annotations

import sys
from pathlib import Path

# The saga world and its scenarios are written once (tests/unit/saga) and run here on DynamoDB.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "saga"))
