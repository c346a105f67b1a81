"""Shared fixtures: where the read-only reference data lives (../shared beside the clone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ENET_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"
MINDSPORE = REFERENCE / "mindspore"
DATA = SHARED / "data"


def require(path: Path) -> Path:
    """Skip (with the reason) when the shared reference data is not beside the checkout."""
    if not path.exists():
        pytest.skip(f"reference data not found: {path} (set ENET_SHARED)")
    return path
