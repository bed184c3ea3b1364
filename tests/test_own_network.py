"""A network and a data module of the user's own package, trained by anneal's train.py through the config without
editing anneal (docs/extending.md), and rebuilt by the ensemble CLI only from packages the user allows."""

import json
import sys
import textwrap

import pytest
import yaml
from conftest import FAST, compose_config, run_cli

from anneal.config import build_network
from anneal.config.build import build_data
from anneal.ensemble import legacy_part
from anneal.ensemble import main as ensemble_main
from anneal.errors import ConfigError
from anneal.record import Part
from anneal.run import run

PACKAGE = {
    "mypkg/__init__.py": "",
    "mypkg/nets.py": """
        from torch import nn


        class Net(nn.Sequential):
            def __init__(self, width: int = 8, num_classes: int = 10):
                super().__init__(
                    nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                    nn.Linear(width, num_classes),
                )


        class LeNet5(Net):
            '''Named as one of anneal's networks: the record must never take it for anneal's.'''


        class NotANetwork:
            def __init__(self, num_classes: int = 10):
                pass
        """,
    "mypkg/data.py": """
        from anneal.data import ImageData, synthetic_images


        class Data(ImageData):
            name = "my images"

            def __init__(self, size: int = 64, **kwargs):
                super().__init__(**kwargs)
                self.size = size

            def load(self):
                x, y = synthetic_images(self.size + 32, seed=3)
                return x[: self.size], y[: self.size], x[self.size :], y[self.size :]
        """,
    "mypkg/helpers.py": """
        from pathlib import Path


        def not_a_class(**kwargs):
            Path(__file__).with_name("CALLED").write_text("called")
        """,
    # a package that must never be imported: importing it leaves a mark
    "evilpkg/__init__.py": """
        from pathlib import Path

        Path(__file__).with_name("IMPORTED").write_text("imported")


        class Net:
            pass
        """,
    "mypkgevil/__init__.py": """
        from pathlib import Path

        Path(__file__).with_name("IMPORTED").write_text("imported")
        """,
    # the user's own option files, in their own config directory (hydra.searchpath or --config-dir)
    "myconf/data/mydata.yaml": """
        _target_: mypkg.data.Data
        size: 64
        batch_size: 16
        val_size: 0
        augment: true
        eval_batch_size: 1000
        test_every_epoch: true
        device: auto
        seed: ${seed}
        """,
}


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    """The user's package on sys.path (as an installed or `pip install -e` package would be), forgotten after."""
    root = tmp_path / "user"
    for path, text in PACKAGE.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m.split(".")[0] in ("mypkg", "evilpkg", "mypkgevil")]:
        del sys.modules[name]


def ensemble(run_dir, capsys, *flags):
    capsys.readouterr()
    try:
        ensemble_main([str(run_dir), "--device", "cpu", *flags])
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err


def test_own_network_and_data_train_through_the_config_and_only_an_allowed_package_is_rebuilt(
    user_code, tmp_path, capsys, monkeypatch
):
    run_dir = tmp_path / "run"
    cfg = compose_config(
        f"hydra.searchpath=[file://{user_code / 'myconf'}]",
        "data=mydata",  # an option file of the user's config directory
        "model._target_=mypkg.nets.LeNet5",  # the user's class, on the command line
        "+model.width=4",
        "schedule=snapshot",
        "schedule.cycles=2",
        "ensemble=snapshot",
        "trainer.max_epochs=2",
        *FAST,
        output_dir=run_dir,
    )
    run(cfg)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["network"] == {"name": "mypkg.nets.LeNet5", "settings": {"width": 4, "num_classes": 10}}
    assert record["data"]["name"] == "mypkg.data.Data" and record["data"]["settings"]["size"] == 64
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"] == "my images: 64 train / 32 test images" and len(results["snapshots"]) == 2

    code, stderr = ensemble(run_dir, capsys)  # not allowed: refused, naming the flag that would allow it
    assert code == 2 and stderr.count("\n") == 1 and "--allow-module mypkg" in stderr, stderr
    assert ensemble(run_dir, capsys, "--allow-module", "mypkg")[0] == 0
    monkeypatch.setenv("ANNEAL_ALLOW_MODULES", "otherpkg, mypkg")
    assert ensemble(run_dir, capsys)[0] == 0
    monkeypatch.delenv("ANNEAL_ALLOW_MODULES")

    hostile = [
        ("network", "os.system"),  # not under an allowed package: refused before any import
        ("network", "evilpkg.Net"),
        ("network", "mypkgevil.Net"),  # a package whose name only begins like an allowed one
        ("network", "mypkg.nets.NotANetwork"),  # allowed, but not an nn.Module: never built
        ("network", "mypkg._private.Net"),
        ("data", "mypkg.helpers.not_a_class"),  # a function of an allowed package: never called
        ("data", "mypkg.nets.Net"),  # a network is no data module
        ("data", "mypkg.missing.Data"),
    ]
    for part, name in hostile:
        planted = {**record, part: {"name": name, "settings": record[part]["settings"]}}
        (run_dir / "run.json").write_text(json.dumps(planted))
        code, stderr = ensemble(run_dir, capsys, "--allow-module", "mypkg")
        assert code == 2 and stderr.count("\n") == 1 and "error:" in stderr, (name, stderr)
    assert not (user_code / "evilpkg" / "IMPORTED").exists() and "evilpkg" not in sys.modules
    assert not (user_code / "mypkgevil" / "IMPORTED").exists()
    assert not (user_code / "mypkg" / "CALLED").exists()
    code, stderr = ensemble(run_dir, capsys, "--allow-module", "my pkg")
    assert code == 2 and "--allow-module='my pkg' is invalid" in stderr


def test_the_command_line_finds_the_users_option_files_and_labels_the_arm_by_them(user_code, tmp_path):
    """train.py itself, with the user's config directory on Hydra's search path (mode=preview: no training)."""
    done = run_cli(
        f"hydra.searchpath=[file://{user_code / 'myconf'}]",
        "data=mydata",
        "model._target_=mypkg.nets.Net",
        "mode=preview",
        "logger=csv",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"PYTHONPATH": str(user_code), "WANDB_MODE": "disabled"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["arm"]["options"]["data"] == "mydata" and record["label"].startswith("mydata ")


def test_a_legacy_config_names_a_class_of_an_allowed_package_only():
    config = {"model": {"_target_": "mypkg.nets.Net", "width": 4, "compile": False}}
    assert legacy_part(config, "model", ("mypkg",)) == Part("mypkg.nets.Net", {"width": 4})
    with pytest.raises(ConfigError, match="not one of anneal's own classes"):
        legacy_part(config, "model")
    with pytest.raises(ConfigError, match="not one of anneal's own classes"):
        legacy_part(config, "model", ("mypk",))


def test_a_data_module_or_network_train_py_cannot_train_is_refused_in_one_line(user_code, tmp_path):
    cfg = compose_config(output_dir=tmp_path)
    cfg.data = {"_target_": "lightning.LightningDataModule"}
    with pytest.raises(ConfigError, match=r"^data\._target_='lightning.LightningDataModule' is invalid: train.py "):
        build_data(cfg)
    cfg = compose_config("model._target_=mypkg.nets.NotANetwork", output_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^model\._target_='mypkg.nets.NotANetwork' is invalid: a torch.nn.Module"):
        build_network(cfg, num_classes=10)


def test_the_docs_option_file_is_the_one_tested():
    """docs/extending.md shows the user's data option file this test trains with."""
    from conftest import ROOT

    page = (ROOT / "docs" / "extending.md").read_text()
    shown = page.split("# myconf/data/mydata.yaml", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(shown) == yaml.safe_load(textwrap.dedent(PACKAGE["myconf/data/mydata.yaml"]))
