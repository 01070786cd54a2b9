#!/usr/bin/env bash
# Creates the virtual environment and installs everything the suite needs (called by `make setup`).
set -euo pipefail
python="${1:-python3}"
venv="${2:-.venv}"
fmnist=/usr/share/datasets/fashion-mnist

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# torch first and pinned: a loose requirement pulls a multi-GB CUDA build. CUDA users install their torch first.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "setup: installing torch==2.13.0"
    "${pip[@]}" install torch==2.13.0
fi
echo "setup: installing the suite and its dependencies"
"${pip[@]}" install -e ".[dev]"
# torchattacks declares torchvision and an old requests that it never imports: install it alone.
"${pip[@]}" install --no-deps torchattacks==3.5.1
# timm's wheel, not installed: tests import it with a stand-in torchvision (scripts/timm_reference.py) to check
# our ConvNeXt/Swin against timm key for key and logit for logit. Optional: those tests skip without it.
if ! ls "$venv"/reference-wheels/timm-1.0.31-*.whl >/dev/null 2>&1; then
    "${pip[@]}" download --no-deps timm==1.0.31 -d "$venv/reference-wheels" ||
        echo "setup: WARNING: could not download the timm wheel; the timm agreement test will be skipped"
fi

if [ ! -d "$fmnist" ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "setup: installing the Fashion-MNIST Debian package"
        (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }) ||
            echo "setup: WARNING: could not install dataset-fashion-mnist with apt-get"
    fi
    if [ ! -d "$fmnist" ]; then
        echo "setup: Fashion-MNIST not found at $fmnist."
        echo "       Put the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,"
        echo "       t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a folder and pass --data-dir DIR."
    fi
fi
echo "setup: done"
