"""Where and how inference runs: the torch device, and the runtime of the policy's fixed-shape parts.

At batch 1 the policy's networks are small and called with the same shapes every time, so a runtime
that plans a fixed graph once beats PyTorch's eager dispatch: ONNX Runtime on the CPU (the
``onnxruntime`` package, optional), a TorchScript trace otherwise (also on CUDA). ``Compiled`` wraps
one module for one runtime and re-makes its graph when the input shapes, the device or the module's
weights change (an exported ONNX graph holds a copy of the weights; a trace shares them), so training,
EMA updates and ``load_state_dict`` never leave a stale graph behind. All runtimes give the same
actions up to float rounding (tested: ~1e-6).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from robot_stack.errors import UserError

RUNTIMES = ("auto", "onnxruntime", "torchscript", "eager")


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def choose_runtime(runtime: str, device: torch.device) -> str:
    """``auto``: ONNX Runtime on the CPU when installed, else TorchScript (always on CUDA)."""
    if runtime not in RUNTIMES:
        raise UserError(f"runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "onnxruntime" if device.type == "cpu" and onnxruntime_available() else "torchscript"
    if runtime == "onnxruntime" and (device.type != "cpu" or not onnxruntime_available()):
        raise UserError("runtime onnxruntime: needs the CPU and the onnxruntime package (pip install onnxruntime)")
    return runtime


def _flat(inputs: Sequence) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for x in inputs:
        out.extend(_flat(x) if isinstance(x, (list, tuple)) else [x])
    return out


def weights_key(module: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place (torch's version counter)."""
    return tuple((t.data_ptr(), t._version) for t in (*module.parameters(), *module.buffers()))


class Compiled:
    """``module(*inputs)`` on a runtime, one graph per input signature, rebuilt when the weights change."""

    def __init__(self, module: nn.Module, runtime: str):
        self.module, self.runtime = module, runtime
        self._graphs: dict[tuple, object] = {}

    def __call__(self, *inputs) -> torch.Tensor:
        flat = _flat(inputs)
        if self.runtime == "eager":
            return self.module(*inputs)
        signature = tuple((tuple(t.shape), t.dtype, t.device) for t in flat)
        version = weights_key(self.module) if self.runtime == "onnxruntime" else ()
        graph, made_for = self._graphs.get(signature, (None, None))
        if graph is None or made_for != version:
            graph = self._make(inputs, len(flat))
            self._graphs[signature] = (graph, version)
        if self.runtime == "torchscript":
            return graph(*inputs)
        names, session = graph
        out = session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, flat)})[0]
        return torch.from_numpy(out)

    def _make(self, inputs: tuple, n_flat: int):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # GroupNorm's batch-size check, shape-only
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript and its ONNX exporter
            warnings.simplefilter("ignore", FutureWarning)
            if self.runtime == "torchscript":
                return torch.jit.trace(self.module, inputs, check_trace=False)
            return _onnx_session(self.module, inputs, n_flat)


def _onnx_session(module: nn.Module, inputs: tuple, n_flat: int) -> tuple[list[str], object]:
    """Export with the TorchScript-based exporter (fast, no onnxscript) and open a CPU session."""
    import onnxruntime as ort

    names = [f"in{i}" for i in range(n_flat)]
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, inputs, buffer, input_names=names, output_names=["out"], opset_version=17,
                          dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    # sleeping workers unless the user asked for spinning ones, as torch's OpenMP (see the CLI's OMP_WAIT_POLICY)
    spin = os.environ.get("OMP_WAIT_POLICY", "").upper() == "ACTIVE"
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    return names, session
