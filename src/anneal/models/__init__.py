"""The classifiers: LeNet-5, the 4-conv LeNet of the warmup + cosine demo, and Wide ResNets."""

from anneal.models.lenet import LeNet5, LeNetConv4
from anneal.models.wrn import WideResNet

__all__ = ["LeNet5", "LeNetConv4", "WideResNet"]
