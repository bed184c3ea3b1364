"""Lightning's checkpoint writer, made atomic (`trainer.plugins` in conf/trainer/default.yaml)."""

from __future__ import annotations

from typing import Any

from lightning.fabric.plugins.io import TorchCheckpointIO

from anneal.storage import load_tensors, save_tensors


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer with the temporary file next to the checkpoint, renamed over it.
    Lightning's own writes to a file in the system's temp directory and moves it, which is a copy (that a
    kill can leave half-written) when that directory is on another filesystem. Loads are weights_only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        save_tensors(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return load_tensors(path, map_location=map_location or "cpu")
