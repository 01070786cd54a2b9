#!/usr/bin/env bash
# One command for a GPU machine (under 8 minutes on one GPU): the default budget's cascade on a full-size MeanSparse
# WRN-94-16 (random weights) and 300 CIFAR-shaped images; prints images/s per attack, peak memory, the batch size
# chosen, whether two runs agree per sample, and a kill-and-resume check. Exit status 0 when both checks hold.
#   scripts/device_check.sh                      # on the GPU, batch size auto, float32 proposals
#   scripts/device_check.sh --precision bfloat16
#   scripts/device_check.sh --small --n 24       # on a CPU: a WRN-10-1 (tests/test_device_check.py runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" scripts/device_check.py "$@"
