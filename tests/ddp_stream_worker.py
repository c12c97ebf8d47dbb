"""Runs ``mtlkit train ARGS`` in this process, alone or as one rank under torchrun, recording which row groups of
the streamed table it read the features of; writes ``OUT-<rank>.json``. Used by test_distributed.py; not a test
module itself. Usage: ddp_stream_worker.py OUT mtlkit-train-args..."""

from __future__ import annotations

import json
import os
import sys

import torch
from ddp_worker import exit_without_teardown

from mtlkit.cli import main
from mtlkit.data import streaming


def run() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(1)
    read: list[list[int]] = []
    real = streaming._read_row_group

    def spy(group, columns, o, *a):  # the row group's first data row, and whether its features were read
        read.append([o, int(len(columns) > 2)])
        return real(group, columns, o, *a)

    streaming._read_row_group = spy
    code = main(argv)
    with open(f"{out}-{os.environ.get('RANK', 'alone')}.json", "w") as f:
        json.dump({"code": code, "read": read}, f)
    exit_without_teardown()


if __name__ == "__main__":
    run()
