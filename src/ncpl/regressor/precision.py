"""Reduced precision on the CPU: which low-precision units this machine has, and a network set up to use them.

- ``bf16``: the backbone's weights in bfloat16, for CPUs with bf16 units (AVX512_BF16 or AMX, as torch
  reports them). Without them torch emulates bf16 in software, many times slower than fp32 (measured
  on an AVX2-only EPYC: benchmarks/results/throughput.md). Having the units is not enough either: on a Xeon
  with AVX512_BF16 and no AMX, torch 2.13 multiplies bf16 matrices at half its fp32 rate (155 against 303
  GFLOP/s; MiniLM scored 222 configs/s in bf16 against 344 in fp32), where AMX runs them 4x faster. So ``auto``
  picks bf16 only where the units are AND a bf16 matmul measured in this process beats fp32 by
  `BF16_MIN_SPEEDUP`.
- ``int8``: dynamic quantization of the backbone's Linear layers (torch.ao: int8 weights, activations
  quantized per batch), the option for AVX2-only CPUs. Off by default: it moved the MAE by more than the 0.0005
  nats allowed (MiniLM: 0.0007 on StepLaw ID; SmolLM2: 0.0026 on its validation runs, where it scores 1.4x faster
  than fp32; benchmarks/results/throughput.md).
- ``fp32``: the network as trained.

Only a network on the CPU is touched: one on a GPU runs as loaded, whatever is asked.
"""

from __future__ import annotations

import copy
import functools
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

DTYPES = ("auto", "fp32", "bf16", "int8")
# A margin, so that `auto` does not flip between runs where the two rates are close: AMX ran a 1024^3 bf16 matmul 4.3x
# faster than fp32 (benchmarks/throughput.py), a Xeon with AVX512_BF16 alone 0.52-0.61x in this probe.
BF16_MIN_SPEEDUP = 1.25


@dataclass(frozen=True)
class CPUFeatures:
    capability: str  # torch's kernel level: DEFAULT, AVX2, AVX512, ...
    avx512_bf16: bool
    amx: bool
    vnni: bool

    @property
    def bf16_units(self) -> bool:
        return self.avx512_bf16 or self.amx

    def flags(self) -> str:
        """The flags that decide the dtype, e.g. ``AVX2, no avx512_bf16, no amx, no vnni``."""
        named = {"avx512_bf16": self.avx512_bf16, "amx": self.amx, "vnni": self.vnni}
        return ", ".join([self.capability] + [name if on else f"no {name}" for name, on in named.items()])


def cpu_features() -> CPUFeatures:
    """What torch reports about this CPU; /proc/cpuinfo where this torch build cannot say."""
    capability = torch.backends.cpu.get_cpu_capability()
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx": "_is_amx_tile_supported", "vnni": "_is_vnni_supported"}
    found = {name: getattr(torch.cpu, probe, None) for name, probe in probes.items()}
    if all(found.values()):
        return CPUFeatures(capability, **{name: bool(probe()) for name, probe in found.items()})
    flags = _cpuinfo_flags()
    return CPUFeatures(
        capability,
        avx512_bf16="avx512_bf16" in flags,
        amx="amx_tile" in flags,
        vnni=bool({"avx512_vnni", "avx_vnni"} & flags),
    )


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.partition(":")[2].split()}


PROBE_SIZE, PROBE_REPEATS = 512, 8


@functools.cache
def bf16_matmul_speedup() -> float:
    """How many times faster than fp32 this process multiplies PROBE_SIZE^2 matrices in bf16 (best of PROBE_REPEATS
    each; measured once a process, 0.05 s on a Xeon without AMX)."""
    size, repeats = PROBE_SIZE, PROBE_REPEATS

    def best_seconds(dtype: torch.dtype) -> float:
        generator = torch.Generator().manual_seed(0)
        a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
        a @ b  # warm-up: the first product pays for kernel selection
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        return min(times)

    return best_seconds(torch.float32) / best_seconds(torch.bfloat16)


def bf16_pays(features: CPUFeatures | None = None, speedup: float | None = None) -> bool:
    """Whether this CPU runs bf16 faster than fp32: it has bf16 units and a bf16 matmul beats fp32's by
    `BF16_MIN_SPEEDUP` (measured here unless `speedup` is given; never measured without the units, where torch
    emulates bf16)."""
    if not (features or cpu_features()).bf16_units:
        return False
    return (bf16_matmul_speedup() if speedup is None else speedup) >= BF16_MIN_SPEEDUP


def resolve(
    dtype: str,
    device: torch.device | str = "cpu",
    features: CPUFeatures | None = None,
    bf16_speedup: float | None = None,
) -> str:
    """The dtype a network on `device` runs in: ``auto`` becomes ``bf16`` where it pays (`bf16_pays`), else
    ``fp32``."""
    if dtype not in DTYPES:
        raise ValueError(f"inference_dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    if torch.device(device).type != "cpu":
        return "fp32"  # GPUs run the network as loaded (configs/gpu.yaml trains it in bf16 already)
    if dtype == "auto":
        return "bf16" if bf16_pays(features, bf16_speedup) else "fp32"
    return dtype


def _with_dtype(model: object) -> list:
    """The predictors of a loaded model that have an `inference_dtype` (NCPL): itself, or an ensemble's members."""
    return [predictor for predictor in [model, *getattr(model, "members", [])] if hasattr(predictor, "inference_dtype")]


def set_inference_dtype(model: object, dtype: str) -> object:
    """Set `inference_dtype` on a loaded predictor and on every member of an ensemble that has one (NCPL)."""
    for predictor in _with_dtype(model):
        predictor.inference_dtype = dtype
    return model


def resolved_dtype(model: object) -> str | None:
    """The dtype a loaded model's networks run in (`NCPL.resolved_dtype`); None for a model without networks."""
    networks = _with_dtype(model)
    return networks[0].resolved_dtype() if networks else None


def for_inference(network: nn.Module, dtype: str) -> nn.Module:
    """`network` itself for fp32, else a copy whose backbone runs in `dtype` (the encoder and head stay fp32)."""
    if dtype == "fp32":
        return network
    if dtype not in ("bf16", "int8"):
        raise ValueError(f"inference_dtype: {dtype!r} is not a resolved dtype (fp32, bf16, int8)")
    low = copy.deepcopy(network).eval()
    if dtype == "bf16":
        low.backbone.to(torch.bfloat16)
        return low
    with warnings.catch_warnings():  # torch.ao's eager quantization is deprecated in favour of torchao, not yet gone
        warnings.simplefilter("ignore")
        low.backbone = torch.ao.quantization.quantize_dynamic(low.backbone, {nn.Linear}, dtype=torch.qint8)
    return low
