"""What this CPU can do for the extractors, read at run time, and the key of a per-machine cache.

    info = cpu_info()          # /proc/cpuinfo + torch's own view of the CPU
    info.native_bf16           # AVX-512-bf16 or AMX: bf16 runs in hardware, not emulated
    info.describe()            # "AMD EPYC; flags avx2 fma; torch capability AVX2"
    machine_key(info)          # changes when the CPU, its flags or a library version changes

Development machines differ from day to day (AMX, AVX-512-bf16, AVX2 only), so nothing here is
assumed: every path decision starts from these flags.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# the flags that change which extractor path is fastest or exact
FLAGS_THAT_MATTER = ("avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni",
                     "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 dot products in one instruction
# libraries whose version changes the speed or the numbers of a path
LIBRARIES = ("torch", "openvino", "nncf")


@dataclass(frozen=True)
class CpuInfo:
    model: str  # "AMD EPYC", "Intel(R) Xeon(R) Platinum 8480+", ...
    flags: tuple[str, ...]  # FLAGS_THAT_MATTER present on this CPU, in that order
    torch_capability: str  # torch.backends.cpu.get_cpu_capability(): "AVX2", "AVX512", ...

    @property
    def native_bf16(self) -> bool:
        return any(f in self.flags for f in NATIVE_BF16_FLAGS)

    @property
    def int8_dot(self) -> bool:
        return any(f in self.flags for f in INT8_DOT_FLAGS)

    def short(self) -> str:
        return f"{self.model}, {self.torch_capability}, " + (
            "native bf16" if self.native_bf16 else "no native bf16")

    def describe(self) -> str:
        flags = " ".join(self.flags) or "none of " + " ".join(FLAGS_THAT_MATTER)
        bf16 = "native bf16" if self.native_bf16 else "no native bf16 (no AVX-512-bf16, no AMX)"
        return f"{self.model}; flags {flags}; {bf16}; torch capability {self.torch_capability}"


def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """/proc/cpuinfo text -> (model name, FLAGS_THAT_MATTER it lists), from its first CPU."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), tuple(
        f for f in FLAGS_THAT_MATTER if f in flags)


def cpu_info(cpuinfo: Path = CPUINFO) -> CpuInfo:
    """This machine's CpuInfo (without /proc/cpuinfo: the platform's name and no flags)."""
    import torch

    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    model, flags = parse_cpuinfo(text)
    return CpuInfo(model, flags, torch.backends.cpu.get_cpu_capability())


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of `names` (absent ones left out), without importing them."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_key(info: CpuInfo, versions: dict[str, str] | None = None) -> str:
    """A short hash of the CPU model, its flags that matter, torch's capability and the library
    versions: a cached measurement made under another key is stale."""
    versions = library_versions() if versions is None else versions
    blob = json.dumps({"model": info.model, "flags": info.flags,
                       "capability": info.torch_capability, "versions": versions},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
