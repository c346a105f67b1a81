"""Shared fixtures: where the read-only reference data lives (../shared beside the clone), a
tiny prepared set and run, the CLI in a fresh process, and a full or read-only disk."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


#: Runs the CLI on a disk with 64 KiB free: every output enet publishes and every disk
#: reservation spends from it, and one that does not fit fails as on a full disk (the seams
#: in enet.fileio), for machines where no small tmpfs can be mounted. Forked workers inherit
#: it (each with what was left when it started).
_DISK_FULL = """
import errno, os, sys
import enet.fileio as fileio
room = [64 * 1024]
def spend(size):
    if size > room[0]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    room[0] -= size
publish, reserve = fileio._publish, fileio._reserve
fileio._publish = lambda tmp, path, repl: (spend(tmp.stat().st_size), publish(tmp, path, repl))
fileio._reserve = lambda fd, size: (spend(size), reserve(fd, size))
from enet.cli import main
sys.argv[0] = "enet"
sys.exit(main(sys.argv[1:]))
"""


def run_enet(
    *args: str, disk_full: bool = False, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """The CLI in a fresh process, as users run it. int8 files run on OpenVINO go through it:
    a process that has run OpenVINO's int8 kernels segfaulted when it later forked.
    ``disk_full``: as if every disk enet writes to had 64 KiB free (see ``_DISK_FULL``)."""
    start = [sys.executable, "-c", _DISK_FULL] if disk_full else [sys.executable, "-m", "enet"]
    return subprocess.run(
        [*start, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def one_line_error(result: subprocess.CompletedProcess, *parts: str) -> str:
    """The single ``enet: error:`` line of a failed command, which must contain ``parts``;
    no traceback, exit code 1 or 2."""
    assert result.returncode in (1, 2), (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("enet: error: ")]
    assert len(errors) == 1, result.stderr
    for part in parts:
        assert part in errors[0], (part, errors[0])
    return errors[0]


def cityscapesscripts_scores(pred_files, gt_files) -> dict:
    """The scores of cityscapesScripts' own evalPixelLevelSemanticLabeling, the reference
    the official protocol is checked against."""
    import numpy as np

    np.in1d = np.isin  # cityscapesscripts 2.3.0 still calls np.in1d (gone in numpy 2.4)
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    args = official.args
    args.quiet, args.JSONOutput, args.evalInstLevelScore = True, False, True
    return official.evaluateImgLists([str(p) for p in pred_files], [str(g) for g in gt_files], args)


def openvino_kernels(compiled, *layers: str) -> list[str]:
    """The kernel OpenVINO picked for each layer of a compiled model of the given types
    (its own names: ``Convolution``, ``Deconvolution`` for transposed convolutions)."""
    return [
        op.get_rt_info()["primitiveType"].astype(str)
        for op in compiled.get_runtime_model().get_ordered_ops()
        if op.get_rt_info()["layerType"].astype(str) in layers
    ]


# --- the reference models, converted once -------------------------------------------------------


@pytest.fixture(scope="session")
def seed_checkpoint(tmp_path_factory) -> Path:
    """The seed's MindSpore ENet (shared reference data) as an enet checkpoint."""
    from enet.convert import convert_checkpoint

    path = tmp_path_factory.mktemp("seed") / "seed.pt"
    convert_checkpoint(require(MINDSPORE / "mindspore_enet.ckpt"), path, "mindspore")
    return path


@pytest.fixture(scope="session")
def pytorch_enet_checkpoint(tmp_path_factory) -> Path:
    """PyTorch-ENet's Cityscapes model (shared reference data) as an enet checkpoint."""
    from enet.convert import convert_checkpoint

    path = tmp_path_factory.mktemp("pytorch_enet") / "pt.pt"
    source = require(REFERENCE / "pytorch_enet_checkpoint.pth")
    convert_checkpoint(source, path, "pytorch-enet")
    return path


# --- a tiny data set and run ------------------------------------------------------------------

TINY = {"size": (64, 32), "batch_size": 4, "workers": 0, "lr": 2e-3}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """16 train + 4 val synthetic frames at 64x32, prepared."""
    from enet.data.prepare import prepare
    from enet.data.synthetic import synthesize

    root = tmp_path_factory.mktemp("tiny")
    synth = synthesize(root / "synth", train=16, val=4, size=(64, 32), seed=3, progress=False)
    prepare("cityscapes", synth, root / "prepared", size=(64, 32), progress=False)
    return root / "prepared"


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A finished three-stage run of one epoch each on ``tiny_data`` (copy it to change it)."""
    from enet.train.config import load_config
    from enet.train.engine import train

    values = {**TINY, "data": str(tiny_data), "out": str(tmp_path_factory.mktemp("run") / "r")}
    values |= {"stage1.epochs": 1, "stage2.epochs": 1, "stage3.epochs": 1}
    return train(load_config(None, **values), progress=False)


# --- disks that fail ----------------------------------------------------------------------------


@dataclass
class Disk:
    path: Path
    #: whether the failure is injected (run_enet(..., disk_full=True)) rather than real
    injected: bool

    def free(self) -> bool:
        """Make room (a real disk grows to 64 MiB); returns the ``disk_full`` to run with."""
        if not self.injected:
            subprocess.run(["mount", "-o", "remount,size=64m", str(self.path)], check=True)
        return False


def _mount(path: Path, options: str) -> bool:
    """A 64 KiB tmpfs at ``path`` (as root), or False where that is not allowed (or
    ENET_TEST_NO_MOUNT=1 asks for the injected faults)."""
    if os.geteuid() != 0 or os.environ.get("ENET_TEST_NO_MOUNT") == "1":
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=64k,{options}", "tmpfs", str(path)],
        capture_output=True,
    )
    return done.returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a full file system: a real 64 KiB tmpfs where this process may mount one,
    else an ordinary folder, with a full disk injected into the enet processes run on it."""
    path = tmp_path / "full"
    mounted = _mount(path, "rw")
    path.mkdir(exist_ok=True)
    yield Disk(path, injected=not mounted)
    if mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    """A folder enet cannot write to: a read-only tmpfs as root, else a folder without write
    permission."""
    path = tmp_path / "ro"
    mounted = _mount(path, "ro")
    if not mounted:
        if os.geteuid() == 0:
            pytest.skip("root without mount: no folder is read-only to this process")
        path.mkdir()
        path.chmod(0o555)
    yield path
    if mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        path.chmod(0o755)


@pytest.fixture(autouse=True)
def default_sigchld() -> None:
    """No Python handler for SIGCHLD between tests: torch's DataLoader installs one, and with
    it a child's exit (a browser, a server) once killed the whole test process with SIGSEGV
    after OpenVINO had run in it (the kernel failed to build the signal's frame)."""
    if signal.getsignal(signal.SIGCHLD) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


@dataclass
class Server:
    """An ``enet serve`` process: its address, and its stderr (the access log) so far."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def enet_server(*flags: str, log_path: Path, model: str = "camvid") -> Iterator[Server]:
    """``enet serve MODEL FLAGS`` in a fresh process on a free loopback port, once it answers
    /healthz; stopped (SIGINT, as Ctrl-C) on the way out."""
    import httpx

    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "enet", "serve", model, "--port", str(port), *flags],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "ENET_TOKEN"},
        )
    url = f"http://127.0.0.1:{port}"
    server = Server(url, process, log_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"enet serve exited {process.returncode}: {server.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"enet serve did not start: {server.log()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
