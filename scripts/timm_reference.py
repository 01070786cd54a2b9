"""timm's real ConvNeXt/Swin, importable on a machine where torchvision is broken, for reference checks only.

timm imports torchvision at import time (for its data transforms) but its model code does not use it. On these
machines torchvision does not load beside the CPU torch (`operator torchvision::nms does not exist`), so this
module imports timm from its PyPI wheel with a stand-in `torchvision` package in `sys.modules` whose attributes are
inert placeholders. It is used only to write and check the reference key lists and to compare logits; the suite
itself never imports timm this way.

    .venv/bin/pip download --no-deps timm==1.0.31 -d .venv/reference-wheels   # scripts/setup.sh does this
    .venv/bin/python scripts/timm_reference.py                                # rewrites tests/fixtures/timm_keys
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEEL_DIR = ROOT / ".venv" / "reference-wheels"
TIMM_VERSION = "1.0.31"
KEYS_DIR = ROOT / "tests" / "fixtures" / "timm_keys"
MODELS = ("convnext_large", "swin_large_patch4_window7_224")


class _Placeholder(type):
    """Any attribute of a placeholder class is another placeholder class (e.g. InterpolationMode.NEAREST)."""

    def __getattr__(cls, name: str):  # noqa: ANN204 - a stand-in module attribute, any type
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {"__init__": lambda self, *args, **kwargs: None})


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str):  # noqa: ANN204 - a stand-in module attribute, any type
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {"__init__": lambda self, *args, **kwargs: None})


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):  # noqa: ANN001, ANN201 - import protocol
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):  # noqa: ANN001, ANN201 - untyped by design in this script/test
        module = _PlaceholderModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):  # noqa: ANN001 - untyped by design in this script/test
        pass


def wheel_path() -> Path | None:
    found = sorted(WHEEL_DIR.glob(f"timm-{TIMM_VERSION}-*.whl"))
    return found[0] if found else None


def import_timm():  # noqa: ANN201 - the timm module
    """timm itself if it imports; else timm from the downloaded wheel with a stand-in torchvision."""
    try:
        import timm

        return timm
    except Exception:  # noqa: BLE001 - the broken torchvision raises RuntimeError at import
        for name in [m for m in sys.modules if m == "timm" or m.startswith(("timm.", "torchvision"))]:
            del sys.modules[name]
    wheel = wheel_path()
    if wheel is None:
        raise FileNotFoundError(f"no timm {TIMM_VERSION} wheel in {WHEEL_DIR} (run make setup)")
    sys.meta_path.insert(0, _TorchvisionStandIn())
    sys.path.insert(0, str(wheel))
    import timm

    return timm


def key_shapes(model) -> dict[str, list[int]]:  # noqa: ANN001 - untyped by design in this script/test
    return {key: list(value.shape) for key, value in model.state_dict().items()}


def main() -> None:
    import torch

    timm = import_timm()
    KEYS_DIR.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
        path = KEYS_DIR / f"{name}.json"
        lines = [f"  {json.dumps(key)}: {json.dumps(shape)}" for key, shape in key_shapes(model).items()]
        path.write_text(
            f'{{"timm_version": "{timm.__version__}", "model": "{name}", "keys": {{\n' + ",\n".join(lines) + "\n}}\n"
        )
        print(f"wrote {path} ({len(model.state_dict())} keys, timm {timm.__version__})")


if __name__ == "__main__":
    main()
