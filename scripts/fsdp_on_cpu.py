"""Run `ncpl train` under accelerate's FSDP2 on CPU processes (gloo), which accelerate itself will not set up.

accelerate 1.15 enters FSDP only on GPU-like devices; torch 2.13's fully_shard works over gloo. This script
lets each process join as MULTI_CPU, then marks accelerate's shared state FSDP with the FSDP2 plugin of
configs/accelerate-fsdp.yaml once the trainer has built its Accelerator, so that `accelerator.prepare`
shards the network as on a GPU cluster. A debugging aid for the cluster path, not a way to train:

    ACCELERATE_USE_CPU=true OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 scripts/fsdp_on_cpu.py \
        train --train runs.parquet --val val.parquet --config tiny-gpu.yaml -o out
"""

import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from ncpl.cli import app
from ncpl.regressor.trainer import Trainer

plugin = FullyShardedDataParallelPlugin(
    fsdp_version=2,
    auto_wrap_policy="transformer_based_wrap",
    state_dict_type="FULL_STATE_DICT",
    reshard_after_forward=True,
)
build = Trainer.__init__


def build_then_mark_fsdp(self, *args, **kwargs):
    build(self, *args, **kwargs)
    for shared in (
        PartialState._shared_state,
        AcceleratorState._shared_state,
    ):  # AcceleratorState re-reads PartialState's
        shared["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["fsdp_plugin"] = plugin
    assert self.accelerator.is_fsdp2


Trainer.__init__ = build_then_mark_fsdp
app(sys.argv[1:])
