"""anneal trains exactly as a plain PyTorch loop would over the same batches (benchmarks/plain_loop.py compares
the two at full size; RESULTS.md, "Fidelity")."""

import math

import torch
import torch.nn.functional as F
from conftest import FAST, compose_config

from anneal.data import CIFAR10
from anneal.models import LeNet5
from anneal.run import run
from anneal.storage import load_tensors


def test_trained_weights_are_a_plain_sgd_loop_over_the_served_batches(tiny_cifar, tmp_path):
    """From torch's default initialization after seeding, plain SGD with cross-entropy over the batches anneal's
    data module serves (the last one partial), the lr set once per epoch, ends on anneal's weights bit for bit:
    nothing in the module, the trainer or the callbacks changes a step, the initialization or the batch order."""
    seed, epochs, batch_size = 3, 3, 64
    cfg = compose_config(
        f"data.root={tiny_cifar}",
        "data.download=false",
        f"data.batch_size={batch_size}",
        "schedule=exp",
        "schedule.k=0.1",
        "schedule.interval=epoch",
        "optimizer.lr=0.05",
        f"trainer.max_epochs={epochs}",
        f"seed={seed}",
        *FAST,
        output_dir=tmp_path,
    )
    run(cfg)
    trained = load_tensors(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]

    torch.manual_seed(seed)
    network = LeNet5()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    data = CIFAR10(root=str(tiny_cifar), download=False, seed=seed, batch_size=batch_size)
    batches = data.batches("train", train=True, batch_size=batch_size)
    sizes = []
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = 0.05 * math.exp(-0.1 * epoch)
        for x, y in batches:
            loss = F.cross_entropy(network(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sizes.append(len(y))
    assert sizes[:5] == [64, 64, 64, 64, 44]  # 300 images: the last batch is kept, partial
    for name, value in network.state_dict().items():
        assert torch.equal(trained[f"network.{name}"], value), name
