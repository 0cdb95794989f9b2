"""Where and at what precision a run trains: the device, `auto` precision (bf16 where the CPU or GPU runs it
natively), autocast, and deterministic kernels."""
from __future__ import annotations

import contextlib
import functools
import os

import torch

from mtl_core.config import ConfigError


# CPU flags with native bf16 matmuls (oneDNN uses them under autocast); without them bf16 is emulated, no faster
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name} requested, but torch sees no CUDA device here (use auto or cpu)")
    return torch.device(name)


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=4)
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The native-bf16 flags of this machine's CPU (Linux's cpuinfo, its first processor); empty where that
    file is absent or unreadable, so `auto` stays at fp32 there."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            text = f.read(1 << 20)  # bounded: the first processor's flags come first
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split()) & frozenset(_CPU_BF16_FLAGS)
    return frozenset()


def bf16_native(device: torch.device) -> bool:
    """Whether `device` multiplies in bf16 natively: a GPU that torch says supports it, a CPU with AMX or
    AVX-512 BF16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(cpu_bf16_flags())


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` is bf16 where the device has native bf16 (`bf16_native`), fp32 elsewhere; the others as given."""
    if precision != "auto":
        return precision
    return "bf16" if bf16_native(device) else "fp32"


@contextlib.contextmanager
def deterministic_kernels(enabled: bool):
    """On CUDA, attention's fused kernels, cuDNN and cuBLAS are non-deterministic by default, and cuDNN's
    LSTM dropout has a state of its own, so two runs of one config (or a run and its resume) drift
    apart. This picks deterministic kernels and the native LSTM for the duration of a run, then
    restores the previous settings."""
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark,
             torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)  # an op without such a kernel warns, never fails
    # cuDNN's LSTM keeps its own dropout state, outside torch's generators (so outside checkpoints):
    # the native LSTM draws its dropout from the CUDA generator that checkpoints carry
    torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark = False, False
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark = saved[2], saved[3]
        torch.backends.cuda.enable_flash_sdp(saved[4])
        torch.backends.cuda.enable_mem_efficient_sdp(saved[5])


def autocast(precision: str, device: torch.device):
    """Mixed precision for the forward pass (`train.precision`); a no-op context at fp32."""
    dtype = _DTYPES.get(resolve_precision(precision, device))
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
