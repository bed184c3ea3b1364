"""The classifiers: LeNet-5, the 4-conv LeNet of the warmup + cosine demo, Wide ResNets, and the VGG,
PreResNet, ResNet and DenseNet of the SWA and Snapshot Ensembles papers."""

from anneal.models.densenet import DenseNet
from anneal.models.lenet import LeNet5, LeNetConv4
from anneal.models.preresnet import PreResNet
from anneal.models.resnet import ResNet
from anneal.models.vgg import VGG
from anneal.models.wrn import WideResNet

__all__ = ["VGG", "DenseNet", "LeNet5", "LeNetConv4", "PreResNet", "ResNet", "WideResNet"]
