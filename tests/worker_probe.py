"""A callback the Ray test adds by config: where a job ran (process, Ray node) and how many threads torch used."""

import json
import os
from pathlib import Path

import lightning as L
import torch


class RecordWorker(L.Callback):
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer, module) -> None:
        import ray

        node = ray.get_runtime_context().get_node_id()
        where = {"pid": os.getpid(), "node": node, "threads": torch.get_num_threads()}
        self.path.write_text(json.dumps(where | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}))
