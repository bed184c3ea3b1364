"""Build the API reference of anneal's public parts from their docstrings, with pdoc (in the dev extra):

    python docs/build_api.py [OUT]        (default: site/api; open OUT/index.html)

One page per module: the package (`anneal.lr_scheduler`, `anneal.preview_lr`), the schedules, the callbacks, the run
record, the report, the data modules and networks, the errors. The wiring of `train.py` (config, run, cli) is left
out: it is not for use from other code. `tests/test_api_docs.py` builds it."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

# the package page alone (pdoc's "!" drops the submodules it would walk), then each public part with its modules
PUBLIC = [
    "anneal",
    r"!anneal\.",
    "anneal.schedules",
    "anneal.schedules.options",  # the schedules and warmups by option name, with their settings
    "anneal.callbacks",
    "anneal.record",
    "anneal.report",
    "anneal.report.__main__",  # the report's command line (pdoc does not walk into a __main__)
    "anneal.preview",
    "anneal.data",
    "anneal.models",
    "anneal.errors",
]
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "site" / "api"


def build(out: Path = DEFAULT_OUT) -> Path:
    """Write the API pages under `out`; returns the path of its index page."""
    import pdoc
    import pdoc.render

    import anneal
    import anneal.record

    # the parts a package imports when first used: pdoc documents what the module holds
    for package in (anneal, anneal.record):
        for name in package.__all__:
            getattr(package, name)
    # pdoc cannot evaluate the string annotations of dataclass fields whose types are imported only for type checks
    warnings.filterwarnings("ignore", message="Error parsing type annotation", category=UserWarning)
    pdoc.render.configure(docformat="google", footer_text=f"anneal {anneal.__version__}", show_source=False)
    pdoc.pdoc(*PUBLIC, output_directory=out)
    return out / "index.html"


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT))
