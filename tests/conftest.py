"""Shared pytest fixtures (CPU only, offline)."""

import os
from pathlib import Path

import pytest

# Tests never reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder next to the repository (benchmark data); tests using it skip when absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} not found (a user's clone has no ../shared)")
    return path
