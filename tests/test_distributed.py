"""Two CPU processes (gloo) under torchrun train one model and write one set of files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from pedseg_lib import distributed as dist


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_single_process_helpers_are_no_ops():
    assert not dist.is_distributed() and dist.is_main() and dist.world_size() == 1
    values = {"a": torch.tensor(1.5), "b": torch.tensor(2.0)}
    assert dist.mean_dict(values) == {"a": 1.5, "b": 2.0}
    assert dist.gather_dicts({1: "x"}) == {1: "x"} and dist.broadcast_object([3]) == [3]
    assert dist.sampler(list(range(4)), seed=0) is None and dist.shard([1, 2]) == [1, 2]


@pytest.mark.slow
def test_two_process_gloo_run_writes_one_set_of_files(synthetic_root, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        "-m", "pedseg_lib", "train", "--preset", "smoke", "--out", str(out), "--quiet",
        "--set", f"data_root={synthetic_root}", "--set", "max_train_images=4", "--set", "max_val_images=2",
        "--set", "min_size=128", "--set", "max_size=160", "--set", "epochs=1", "--set", "warmup_iters=1",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    files = sorted(p.name for p in out.iterdir())
    assert files == ["best.pt", "config.yaml", "history.json", "history_epochs.csv", "history_iterations.csv",
                     "last.pt", "split.json"]
    assert proc.stdout.count("run folder:") == 1  # only rank 0 reports
    history = json.loads((out / "history.json").read_text())
    # 4 images, batch 2, split over 2 processes: one iteration per epoch (one process would need two).
    assert [row["iteration"] for row in history["iterations"]] == [1]
    assert len(history["epochs"]) == 1 and history["status"]["epochs_done"] == 1
