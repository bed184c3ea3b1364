import re
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_callbacks import fit

from anneal.callbacks import SWA
from anneal.errors import ConfigError
from anneal.models import VGG, DenseNet, PreResNet, ResNet


def count(model):
    return sum(p.numel() for p in model.parameters())


def conv(cin, cout, k, bias=False):
    return cin * cout * k * k + (cout if bias else 0)


def bn(c):
    return 2 * c


def linear(cin, cout):
    return cin * cout + cout


# Closed-form parameter counts, written independently of the model code.


def vgg_parameters(depth, batch_norm, classes=10):
    convs_per_stage = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}[depth]
    total, cin = 0, 3
    for cout, convs in zip((64, 128, 256, 512, 512), convs_per_stage):
        for _ in range(convs):
            total += conv(cin, cout, 3, bias=True) + (bn(cout) if batch_norm else 0)
            cin = cout
    return total + linear(512, 512) + linear(512, 512) + linear(512, classes)


def preresnet_parameters(depth, bottleneck, classes=10):
    n = (depth - 2) // (9 if bottleneck else 6)
    expansion = 4 if bottleneck else 1
    total, cin = conv(3, 16, 3), 16
    for planes in (16, 32, 64):
        cout = planes * expansion
        for i in range(n):
            if bottleneck:
                total += bn(cin) + conv(cin, planes, 1) + bn(planes) + conv(planes, planes, 3)
                total += bn(planes) + conv(planes, cout, 1)
            else:
                total += bn(cin) + conv(cin, planes, 3) + bn(planes) + conv(planes, planes, 3)
            if i == 0 and (cin != cout or planes > 16):  # more channels or stride 2: a 1x1 projection
                total += conv(cin, cout, 1)
            cin = cout
    return total + bn(cin) + linear(cin, classes)


def resnet_parameters(depth, classes=10):
    n = (depth - 2) // 6
    total, cin = conv(3, 16, 3) + bn(16), 16
    for c in (16, 32, 64):
        for _ in range(n):
            total += conv(cin, c, 3) + bn(c) + conv(c, c, 3) + bn(c)  # option A shortcuts: no parameters
            cin = c
    return total + linear(64, classes)


def densenet_parameters(depth, k, classes=10):
    n = (depth - 4) // 3
    total, c = conv(3, 16, 3), 16
    for block in range(3):
        for _ in range(n):
            total += bn(c) + conv(c, k, 3)
            c += k
        if block < 2:
            total += bn(c) + conv(c, c, 1)
    return total + bn(c) + linear(c, classes)


# name: (network for k classes, its closed-form count, the published count for 10 classes, features into the classifier)
NETWORKS = {
    "vgg11": (lambda k: VGG(11, num_classes=k), lambda k: vgg_parameters(11, False, k), None, 512),
    "vgg13_bn": (lambda k: VGG(13, True, k), lambda k: vgg_parameters(13, True, k), None, 512),
    "vgg16": (lambda k: VGG(16, num_classes=k), lambda k: vgg_parameters(16, False, k), 15_245_130, 512),
    "vgg16_bn": (lambda k: VGG(16, True, k), lambda k: vgg_parameters(16, True, k), 15_253_578, 512),
    "vgg19": (lambda k: VGG(19, num_classes=k), lambda k: vgg_parameters(19, False, k), None, 512),
    "vgg19_bn": (lambda k: VGG(19, True, k), lambda k: vgg_parameters(19, True, k), None, 512),
    "preresnet110": (lambda k: PreResNet(110, k), lambda k: preresnet_parameters(110, False, k), 1_730_522, 64),
    "preresnet164": (lambda k: PreResNet(164, k), lambda k: preresnet_parameters(164, True, k), 1_703_258, 256),
    "resnet110": (lambda k: ResNet(110, k), lambda k: resnet_parameters(110, k), None, 64),
    "densenet40": (lambda k: DenseNet(40, 12, num_classes=k), lambda k: densenet_parameters(40, 12, k), None, 448),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_parameter_counts(name):
    build, closed_form, published, features = NETWORKS[name]
    ten, hundred = count(build(10)), count(build(100))
    assert ten == closed_form(10)
    if published is not None:
        assert ten == published
    assert hundred == closed_form(100) == ten + 90 * features + 90  # only the classifier grows


def test_the_snapshot_ensembles_networks_have_their_published_size():
    assert round(count(ResNet(110)) / 1e6, 1) == 1.7
    assert round(count(DenseNet(40, 12)) / 1e6, 1) == 1.0


def test_vgg16_for_100_classes():
    assert count(VGG(16, num_classes=100)) == 15_245_130 + 90 * 512 + 90


def test_preresnet_block_choice():
    assert count(PreResNet(110, block="basic")) == count(PreResNet(110))
    assert count(PreResNet(164, block="bottleneck")) == count(PreResNet(164))
    # the SWA reference code builds its "PreResNet-110" from 12 bottlenecks per stage
    assert count(PreResNet(110, block="bottleneck")) == preresnet_parameters(110, True)
    assert count(PreResNet(164, block="basic")) == preresnet_parameters(164, False)


@pytest.mark.parametrize(
    "name", ["vgg11", "vgg16_bn", "vgg19", "preresnet110", "preresnet164", "resnet110", "densenet40"]
)
@pytest.mark.parametrize("classes", [10, 100])
def test_forward(name, classes):
    model = NETWORKS[name][0](classes).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, classes)


def test_densenet_dropout_is_optional():
    assert any(isinstance(m, torch.nn.Dropout) for m in DenseNet(16, dropout=0.2).modules())
    assert not any(isinstance(m, torch.nn.Dropout) for m in DenseNet(16).modules())


@pytest.mark.parametrize(
    "build, key",
    [
        (lambda: VGG(15), "depth"),
        (lambda: VGG(0), "depth"),
        (lambda: PreResNet(100), "depth"),  # not 6n + 2
        (lambda: PreResNet(170), "depth"),  # 6n + 2, but from 164 on "auto" takes bottlenecks: 9n + 2
        (lambda: PreResNet(111, block="basic"), "depth"),
        (lambda: PreResNet(110.0), "depth"),
        (lambda: PreResNet(165, block="bottleneck"), "depth"),
        (lambda: PreResNet(2, block="basic"), "depth"),
        (lambda: PreResNet(110, block="wide"), "block"),
        (lambda: ResNet(100), "depth"),
        (lambda: ResNet(2), "depth"),
        (lambda: DenseNet(41), "depth"),
        (lambda: DenseNet(4), "depth"),
        (lambda: DenseNet(40, growth_rate=0), "growth_rate"),
        (lambda: DenseNet(40, dropout=1.0), "dropout"),
    ],
)
def test_invalid_arguments_name_the_argument(build, key):
    # the bare argument name: the config layer adds the "model." prefix
    with pytest.raises(ConfigError, match=rf"^{key}=") as error:
        build()
    assert error.value.key == key


CONFIGS = ["vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "preresnet110", "preresnet164", "resnet110", "densenet40"]


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_build_the_network_their_comment_describes(name):
    text = (Path(__file__).parents[1] / "conf" / "model" / f"{name}.yaml").read_text()
    published = int(
        re.search(r"\(([\d,]+) parameters for 10 classes\)", text.splitlines()[0]).group(1).replace(",", "")
    )
    spec = OmegaConf.create(text)
    assert "num_classes" not in spec  # it comes from the data module
    spec.pop("compile")
    assert count(instantiate(spec, num_classes=10)) == published == NETWORKS[name][1](10)


# Training behaviour of the papers' networks, on VGG-11, their smallest member (a minute or two on this CPU: slow).


@pytest.mark.slow
def test_swa_recomputes_batchnorm_statistics_of_the_averaged_network(tmp_path):
    torch.manual_seed(0)
    swa = SWA(swa_start=1, swa_freq="epoch")
    trainer, module, data = fit(tmp_path, [swa], epochs=2, network=VGG(11, batch_norm=True))
    results = swa.results(trainer, module, data)
    assert results["swa/n_averaged"] == 2
    averaged = swa.average.module
    batches = list(data.batches("train"))
    first_conv, first_bn = averaged.features[0], averaged.features[1]
    with torch.no_grad():  # update_bn's cumulative average: the mean of the per-batch means of its input
        expected = torch.stack([first_conv(x).mean(dim=(0, 2, 3)) for x, _ in batches]).mean(0)
    torch.testing.assert_close(first_bn.running_mean, expected, rtol=1e-4, atol=1e-5)
    trained = module.network.features[1].running_mean
    assert not torch.allclose(first_bn.running_mean, trained)  # recomputed, not the last network's
    counts = {int(m.num_batches_tracked) for m in averaged.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert counts == {len(batches)}  # every BatchNorm counted one pass over the training set, not the steps


@pytest.mark.slow
def test_a_dropout_network_resumed_between_epochs_gives_the_uninterrupted_weights(tmp_path):
    def run(run_dir, **kwargs):
        torch.manual_seed(0)
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True)
        return fit(run_dir, [checkpoint], epochs=2, network=VGG(11), **kwargs)[1]

    reference = run(tmp_path / "a")
    run(tmp_path / "b", stop_after=1)  # the 2-epoch run, stopped after epoch 1
    resumed = run(tmp_path / "b", ckpt_path=str(tmp_path / "b" / "checkpoints" / "last.ckpt"))
    for (key, value), expected in zip(resumed.network.state_dict().items(), reference.network.state_dict().values()):
        assert torch.equal(value, expected), key
