"""Test-time evaluation outside Lightning's loops: one pass per model, metrics from its probabilities.
Used for the averaged models and the snapshot ensemble, whose members must each be run only once."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_calibration_error


@torch.inference_mode()
def predict(network: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device) -> tuple[Tensor, Tensor]:
    """(softmax probabilities, labels) of a network over all batches, in eval mode."""
    was_training = network.training
    network.eval()
    probs, labels = [], []
    for x, y in batches:
        probs.append(network(x.to(device)).float().softmax(-1).cpu())
        labels.append(y.cpu())
    network.train(was_training)
    return torch.cat(probs), torch.cat(labels)


def classification_metrics(probs: Tensor, labels: Tensor) -> dict[str, float]:
    """Accuracy, negative log-likelihood (the cross-entropy loss) and 15-bin expected calibration error."""
    num_classes = probs.shape[1]
    nll = -probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean()
    return {
        "acc": multiclass_accuracy(probs, labels, num_classes, average="micro").item(),
        "nll": nll.item(),
        "ece": multiclass_calibration_error(probs, labels, num_classes, n_bins=15, norm="l1").item(),
    }
