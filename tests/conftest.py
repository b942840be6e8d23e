"""Shared pytest fixtures (CPU only, offline)."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

# Tests never reach the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Isolation under pytest-xdist: each worker gets its own remote-code module cache and datasets cache (two workers
# writing the same dynamic module or cache file race), and one torch thread (2 workers on 2 cores; subprocesses
# inherit OMP_NUM_THREADS). Set before transformers/datasets are imported: both read these at import time.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
_CACHE_ROOT = Path(tempfile.gettempdir()) / f"modeling_livt_tests_{os.getpid()}_{_WORKER}"
os.environ["HF_MODULES_CACHE"] = str(_CACHE_ROOT / "hf_modules")
os.environ["HF_DATASETS_CACHE"] = str(_CACHE_ROOT / "datasets")
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# Property tests draw the same examples on every run (a failure in CI reproduces locally).
settings.register_profile("derandomized", derandomize=True)
settings.load_profile("derandomized")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_CACHE_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder next to the repository (benchmark data); tests using it skip when absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} not found (a user's clone has no ../shared)")
    return path


@pytest.fixture(scope="session")
def cifar10_dir(shared_dir) -> Path:
    """Full CIFAR-10 in the HF parquet layout (../shared/data/cifar10); tests using it skip when absent."""
    path = shared_dir / "data" / "cifar10"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any connection outside this machine fails the test (loopback and unix sockets stay allowed)."""
    import socket

    local = ("127.0.0.1", "::1", "localhost", "0.0.0.0")
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family == socket.AF_UNIX or host in local:
            return real_connect(sock, address)
        raise RuntimeError(f"test tried to reach the network: {address!r} (tests must run offline)")

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host in local or host is None:
            return real_getaddrinfo(host, *args, **kwargs)
        raise RuntimeError(f"test tried to reach the network: DNS lookup of {host!r} (tests must run offline)")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    """A random tiny CIFAR ResNet teacher for digits, saved as run_teacher.py saves one (DeiT-LT script tests)."""
    from tests.helpers import save_tiny_teacher

    return save_tiny_teacher(tmp_path_factory.mktemp("teacher"))
