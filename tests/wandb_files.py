"""Reading what an offline W&B run wrote (`wandb/offline-run-*/run-<id>.wandb`): W&B's transaction log, a
LevelDB-style log of protobuf records behind a 7-byte header, read here record by record with W&B's own
protobuf definitions. wandb 0.31 ships no Python reader for it (its writer is a Go binary)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768  # LevelDB log blocks
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[pb.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    position, pending = 7, b""
    while position + 7 <= len(data):
        left = BLOCK - position % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def run_file(run_dir: Path) -> Path:
    (found,) = run_dir.glob("run-*.wandb")
    return found


def history(run_dir: Path) -> list[dict]:
    """Every row the run logged, `_step` included."""
    rows = []
    for record in records(run_file(run_dir)):
        if record.WhichOneof("record_type") == "history":
            rows.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item})
    return rows


def run_info(run_dir: Path) -> dict:
    """The run's name, group, tags and config, as its first run record says."""
    for record in records(run_file(run_dir)):
        if record.WhichOneof("record_type") == "run":
            run = record.run
            config = {i.key: json.loads(i.value_json) for i in run.config.update}
            return {
                "id": run.run_id,
                "name": run.display_name,
                "group": run.run_group,
                "tags": list(run.tags),
                "config": config,
            }
    raise AssertionError(f"no run record in {run_dir}")


def config_updates(run_dir: Path) -> dict:
    """The config as logged after the run started (log_hyperparams), merged."""
    config: dict = {}
    for record in records(run_file(run_dir)):
        if record.WhichOneof("record_type") == "config":
            config |= {i.key: json.loads(i.value_json) for i in record.config.update}
    return config
