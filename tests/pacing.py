"""A callback the fault tests add by config: it paces training so that a signal sent after a fixed delay lands
mid-run on a fast machine as on a slow one. Sleeping changes no number."""

import time

import lightning as L


class Pace(L.Callback):
    def __init__(self, seconds_per_step: float) -> None:
        self.seconds_per_step = seconds_per_step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        time.sleep(self.seconds_per_step)
