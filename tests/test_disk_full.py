"""A save that runs out of space (here: past a real file-size limit, EFBIG) is one line naming the path and the
free space, and the checkpoint saved before it stays whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT

# In a child process: writes past 64 KB fail with EFBIG (SIGXFSZ ignored), as a full disk fails with ENOSPC.
CHILD = """
import resource, signal, sys, torch
from zoo.errors import ZooError
from zoo.weights import atomic_save
path = sys.argv[1]
atomic_save({"w": torch.arange(1000.0)}, path)  # 4 KB: fits
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
try:
    atomic_save({"w": torch.zeros(100_000)}, path)  # 400 KB: does not
except ZooError as e:
    print(e)
    sys.exit(2)
"""


def test_a_save_past_the_file_size_limit_is_one_line_and_keeps_the_earlier_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout + proc.stderr[-2000:]
    assert lines[0].startswith(f"cannot save {path}: File too large (") and " free on " in lines[0], lines[0]
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(1000.0))  # the earlier save, whole
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left behind


def test_a_full_disk_is_recognised_behind_torch_save_s_runtime_error(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the writer, wrapped by torch.save in a RuntimeError as it does EFBIG."""
    import errno

    from zoo import weights
    from zoo.errors import ZooError

    weights.atomic_save({"w": torch.ones(3)}, tmp_path / "a.pt")

    def full(obj: object, f: object) -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos") from None

    monkeypatch.setattr(weights.torch, "save", full)
    with pytest.raises(ZooError, match=r"cannot save .*a\.pt: No space left on device \(.* free on "):
        weights.atomic_save({"w": torch.zeros(3)}, tmp_path / "a.pt")
    monkeypatch.undo()
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], torch.ones(3))
