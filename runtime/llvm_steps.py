r"""The steps that turn one LLVM module's text into object code, for this machine.

Parse and verify (`parse`), optimise with LLVM's new pass builder for a target machine
made from the host's CPU name and features (`optimize`), emit an object file
(`emit_object`). `llvm_ready()` sets LLVM up once per process and describes the host.
`engine.py` runs these steps in a child process (`compile_child.py`), several modules at
once (`side_by_side.py`), and loads the result.

>>> module = parse("define void @f() {\n  ret void\n}")
>>> emit_object(llvm_ready().host.target_machine(0), module)[:4]
b'\x7fELF'
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import llvmlite
import llvmlite.binding as llvm

from . import threads
from .once import once


class CompileError(RuntimeError):
    """LLVM IR that does not parse, verify or link; the message says which and where."""


@dataclass(frozen=True)
class HostTarget:
    """Everything about the toolchain and CPU that the machine code depends on."""

    llvmlite_version: str
    llvm_version: str
    triple: str
    cpu: str
    features: str

    @classmethod
    def detect(cls) -> HostTarget:
        features = llvm.get_host_cpu_features()
        flat = features.flatten()
        if features.get("avx512f"):
            # LLVM's tuning for some AVX-512 CPUs (Skylake-SP, Ice Lake) prefers 256-bit
            # vectors; our kernels are long vector loops, so use the host's full width.
            flat += ",-prefer-256-bit"
        return cls(llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info)),
                   llvm.get_process_triple(), llvm.get_host_cpu_name(), flat)

    def target_machine(self, opt_level: int) -> llvm.TargetMachine:
        # A fresh machine each time: an MCJIT engine takes ownership of the one it is given.
        target = llvm.Target.from_triple(self.triple)
        return target.create_target_machine(cpu=self.cpu, features=self.features,
                                            opt=opt_level, jit=True)


@dataclass(frozen=True)
class ObjectCode:
    """A compiled program: relocatable objects (one per group of modules compiled
    together, `side_by_side.py`), and the outside symbols they call (those no part
    defines)."""

    parts: tuple[bytes, ...]
    externals: tuple[str, ...]


@dataclass(frozen=True)
class LLVMReady:
    host: HostTarget


@once
def llvm_ready() -> LLVMReady:
    """Set LLVM up once per process: native target, symbols, the host's description."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    for name, address in threads.native_symbols().items():
        llvm.add_symbol(name, address)
    return LLVMReady(HostTarget.detect())


def parse(ir_text: str, context: llvm.ContextRef | None = None) -> llvm.ModuleRef:
    try:
        module = llvm.parse_assembly(ir_text, context)
        module.verify()
    except RuntimeError as error:
        raise CompileError(f"invalid LLVM IR: {error}") from None
    return module


def pipeline_options(opt_level: int) -> dict:
    """How LLVM's pipeline is tuned; part of the program cache's key (`cache.cache_key`)."""
    return {
        "speed_level": opt_level,
        "loop_vectorization": opt_level >= 2,
        "slp_vectorization": opt_level >= 2,  # off by default in llvmlite, on in clang -O2
        # Our loops are vectorised and interleaved (4 zmm registers per iteration) already;
        # unrolling them further gave no measurable speed (layer norm + softmax step 380
        # us either way, MLP steps within 2%) and took 30-65% of the compile time (0.48 ->
        # 0.17 s for that step): a first call pays for it, a later one does not gain.
        "loop_unrolling": False,
    }


def optimize(module: llvm.ModuleRef, machine: llvm.TargetMachine, opt_level: int) -> None:
    module.triple = machine.triple
    module.data_layout = str(machine.target_data)
    options = pipeline_options(opt_level)
    tuning = llvm.create_pipeline_tuning_options(speed_level=options.pop("speed_level"))
    for name, value in options.items():
        setattr(tuning, name, value)
    builder = llvm.create_pass_builder(machine, tuning)
    unlocked("LLVMPY_RunNewModulePassManager", builder.getModulePassManager(), module, builder)


def emit_object(machine: llvm.TargetMachine, module: llvm.ModuleRef) -> bytes:
    """``machine.emit_object(module)``, without llvmlite's lock (see `_unlocked`)."""
    with llvm.ffi.OutputString() as error:
        buffer = unlocked("LLVMPY_TargetMachineEmitToMemory", machine, module, 1, error)
        if not buffer:
            raise CompileError(f"LLVM could not emit an object: {error}")
    try:
        return ctypes.string_at(llvm.ffi.lib.LLVMPY_GetBufferStart(buffer),
                                llvm.ffi.lib.LLVMPY_GetBufferSize(buffer))
    finally:
        llvm.ffi.lib.LLVMPY_DisposeMemoryBuffer(buffer)


def unlocked(name: str, *args):
    """Call llvmlite's C function ``name`` without the one lock llvmlite holds around
    every call. That lock is for LLVM's global context; optimising and emitting touch only
    their own module, context and target machine, which LLVM allows on several threads at
    once, and they are most of a compile: held, the lock would make the parts of a program
    compile one after the other. (``_cfn`` is llvmlite's unwrapped ctypes function; an
    llvmlite without it gets the locked call.)"""
    function = getattr(llvm.ffi.lib, name)
    return getattr(function, "_cfn", function)(*args)


def external_symbols(module: llvm.ModuleRef) -> tuple[str, ...]:
    """Functions and globals the module uses but does not define (intrinsics excluded)."""
    declared = [*module.functions, *module.global_variables]
    return tuple(sorted(value.name for value in declared
                        if value.is_declaration and not value.name.startswith("llvm.")))
