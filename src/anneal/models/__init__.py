"""The classifiers: LeNet-5, the 4-conv LeNet of the warmup + cosine demo, Wide ResNets, and the VGG,
PreResNet, ResNet and DenseNet of the SWA and Snapshot Ensembles papers."""

from anneal.models.densenet import DenseNet
from anneal.models.lenet import LeNet5, LeNetConv4
from anneal.models.preresnet import PreResNet
from anneal.models.resnet import ResNet
from anneal.models.vgg import VGG
from anneal.models.wrn import WideResNet

# anneal's networks by name: what a run directory may ask to be rebuilt (never a dotted path from the file)
NETWORKS = {cls.__name__: cls for cls in (LeNet5, LeNetConv4, WideResNet, VGG, PreResNet, ResNet, DenseNet)}

__all__ = ["NETWORKS", "VGG", "DenseNet", "LeNet5", "LeNetConv4", "PreResNet", "ResNet", "WideResNet"]
