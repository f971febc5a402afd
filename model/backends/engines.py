"""From a module to something fast to call: decomposed programs, torch.compile, TensorRT.

    ep = export_program(net, (x,))                  # torch.export at fixed shapes, decomposed
    fn = compile_program(ep.module(), "cpu")        # inductor over the decomposed graph (JIT)
    aot_compile(ep, "w.pt2"); fn = aot_load("w.pt2")  # AOTInductor: a compiled .so in a package
    trt = tensorrt_compile(ep, (x,), "cuda")        # TensorRT engines inside a GraphModule
    tensorrt_save(trt, "w.ep", (x,)); trt = tensorrt_load("w.ep")

The decomposed program is the common root: `run_decompositions()` unrolls every LSTM/GRU into
matmuls and elementwise ops, which TensorRT converts (it has no RNN converter) and which
torch.compile fuses without the graph breaks it makes on nn.LSTM. torch_tensorrt is imported
only inside the TensorRT functions: it does not import on a CPU build of torch.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.export import ExportedProgram


def export_program(module: nn.Module, example_inputs: Sequence[Tensor]) -> ExportedProgram:
    """torch.export a copy of `module` in eval mode at the inputs' fixed shapes, decomposed."""
    module = copy.deepcopy(module).eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        return torch.export.export(module, tuple(example_inputs)).run_decompositions()


def program_on(ep: ExportedProgram, device: str) -> ExportedProgram:
    """The program with its weights and constants on `device` (exported on the CPU)."""
    if torch.device(device).type == "cpu":
        return ep
    from torch.export.passes import move_to_device_pass

    return move_to_device_pass(ep, device)


def save_program(ep: ExportedProgram, path: Path) -> None:
    torch.export.save(ep, path)


def load_program(path: Path) -> ExportedProgram:
    return torch.export.load(path)


def compile_program(module: nn.Module, device: str) -> Callable[..., object]:
    """torch.compile over a decomposed program's module: one graph, fixed shapes; CUDA graphs
    on the GPU ("reduce-overhead"), frozen weights (constant-folded, prepacked) on the CPU."""
    if torch.device(device).type == "cuda":
        return torch.compile(module, mode="reduce-overhead", fullgraph=True, dynamic=False)
    return torch.compile(module, fullgraph=True, dynamic=False, options={"freezing": True})


def aot_compile(ep: ExportedProgram, path: Path) -> Path:
    """AOTInductor: compile the program ahead of time into a package (a zip holding a .so).

    The package's kernels run the program's dtypes as exported: autocast does not reach them.
    """
    from torch._inductor import aoti_compile_and_package

    with warnings.catch_warnings():
        # torch deep-copies the graph, whose pytree specs it made itself as LeafSpec, a class
        # it deprecates (torch 2.13): nothing here uses it
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`",
                                category=FutureWarning)
        return Path(aoti_compile_and_package(ep, package_path=str(path)))


def aot_load(path: Path) -> Callable[..., object]:
    from torch._inductor import aoti_load_package

    return aoti_load_package(str(path))


def tensorrt_compile(ep: ExportedProgram, inputs: Sequence[Tensor], device: str,
                     timing_cache: Path | None = None) -> nn.Module:
    """TensorRT engines for a decomposed program at the inputs' fixed shapes and dtypes.

    Precision comes from the program: TensorRT builds strongly typed networks on this path
    (`enabled_precisions` is ignored), so fp16/bf16 means a program exported from a half model
    with half inputs. min_block_size=1 puts every convertible op in TensorRT.
    """
    import torch_tensorrt

    ep = program_on(ep, device)
    inputs = [x.to(device) for x in inputs]
    options: dict[str, object] = {"min_block_size": 1}
    if timing_cache is not None:
        options["timing_cache_path"] = str(timing_cache)
    return torch_tensorrt.dynamo.compile(ep, arg_inputs=inputs, device=torch.device(device),
                                         **options)


def tensorrt_save(module: nn.Module, path: Path, inputs: Sequence[Tensor]) -> None:
    import torch_tensorrt

    torch_tensorrt.save(module, str(path), output_format="exported_program",
                        arg_inputs=list(inputs))


def tensorrt_load(path: Path) -> nn.Module:
    import torch_tensorrt

    return torch_tensorrt.load(str(path)).module()
