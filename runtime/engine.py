r"""LLVM IR text in, native functions out.

The lifecycle of a module, in the spirit of numba's ``core/codegen.py``:

1. **parse** the text and **verify** it (``CompileError`` names what is wrong);
2. **check** that every function or global it declares but does not define can be found
   in the process (MCJIT links an unknown symbol to address 0 without a word, and the
   first call then crashes the interpreter): done on the object code, before step 5;
3. **optimise** with LLVM's new pass builder at O3, for a target machine made from the
   host's CPU name and features, so loops vectorise for the host's vector width;
4. **emit** an object file (the bytes the disk cache stores, see ``cache.py``);
5. **load** the object into its own MCJIT execution engine and look up entry points.

Freshly compiled code and code loaded from the cache take the same path from step 5 on,
so a cache hit runs exactly the machine code a compile would have made.

Steps 1, 3 and 4 (``llvm_steps.py``) run in a child process (``compile_child.py``), so
LLVM's memory stays out of the caller's. A text may hold several modules (a program
comes as one module per kernel, ``compiler/lower/program.py``): the child compiles them
side by side in groups (``side_by_side.py``), and step 5 loads the groups' objects into
one engine, where they call each other's functions.

>>> native = default_engine().compile_module(
...     "define i64 @twice(i64 %x) {\n  %y = add i64 %x, %x\n  ret i64 %y\n}", ["twice"])
>>> import ctypes
>>> native.function("twice", ctypes.c_int64, [ctypes.c_int64])(21)
42
"""

from __future__ import annotations

import ctypes
import threading
import warnings

import llvmlite.binding as llvm

from . import compile_child, threads
from .llvm_steps import (
    CompileError,
    HostTarget,
    ObjectCode,
    llvm_ready,
    optimize,
    parse,
)
from .once import once
from .side_by_side import compile_side_by_side, split_modules


class NativeModule:
    """Machine code loaded into memory. Its functions live exactly as long as this object.

    >>> native.address("twice") > 0  # doctest: +SKIP
    True
    """

    def __init__(self, execution_engine: llvm.ExecutionEngine, object_code: ObjectCode):
        self._execution_engine = execution_engine
        self.object_code = object_code
        self._addresses: dict[str, int] = {}

    def address(self, name: str) -> int:
        """The address of the defined function ``name``; ``KeyError`` if there is none."""
        if name not in self._addresses:
            address = self._execution_engine.get_function_address(name)
            if not address:
                raise KeyError(f"compiled module defines no function named {name!r}")
            self._addresses[name] = address
        return self._addresses[name]

    def require(self, entry_points: list[str]) -> None:
        """Raise ``CompileError`` unless every name in ``entry_points`` is defined here."""
        for name in entry_points:
            try:
                self.address(name)
            except KeyError as error:
                raise CompileError(error.args[0]) from None

    def function(self, name: str, restype, argtypes) -> ctypes._CFuncPtr:
        """``name`` as a ctypes function (which keeps this module, hence the code, alive)."""
        prototype = ctypes.CFUNCTYPE(restype, *argtypes)
        function = prototype(self.address(name))
        function.native_module = self
        return function


class Engine:
    """Turns LLVM IR text into native code for this machine. Safe to share between threads.

    >>> Engine().optimized_ir("define void @f() {\\n  ret void\\n}").count("define")
    1
    """

    def __init__(self, opt_level: int = 3):
        self.opt_level = opt_level
        self._lock = threading.RLock()  # MCJIT engines live in LLVM's global context

    @property
    def host(self) -> HostTarget:
        return llvm_ready().host

    def compile_module(self, ir_text: str, entry_points: list[str]) -> NativeModule:
        """Compile and load ``ir_text``; ``entry_points`` must be functions it defines."""
        return self.load_object(self.compile_object(ir_text), entry_points)

    def compile_object(self, ir_text: str) -> ObjectCode:
        """Steps 1-4: the relocatable object code for ``ir_text``, made in a child
        process (`_compile_in_a_child`)."""
        [object_code] = _compile_in_a_child([(ir_text, self.opt_level)])
        _check_resolvable(object_code.externals)  # the threading runtime's are known now
        return object_code

    def load_object(self, object_code: ObjectCode, entry_points: list[str]) -> NativeModule:
        """Step 5: load machine code made by ``compile_object`` (now or in another process)."""
        _runtime()
        with self._lock:
            native = _link(object_code, self.host.target_machine(self.opt_level))
        native.require(entry_points)
        return native

    def optimized_ir(self, ir_text: str) -> str:
        """The modules as LLVM's optimiser leaves them (``tracegrad ir --stage llvm``),
        each on its own (a compile optimises them linked in groups, which changes nothing
        inside a kernel: kernels are never inlined into each other)."""
        return "\n".join(str(module) for module, _ in self._optimized(ir_text))

    def assembly(self, ir_text: str) -> str:
        """Host assembly for ``ir_text`` (``tracegrad ir --stage asm``)."""
        return "\n".join(machine.emit_assembly(module)
                         for module, machine in self._optimized(ir_text))

    def _optimized(self, ir_text: str) -> list[tuple[llvm.ModuleRef, llvm.TargetMachine]]:
        optimized = []
        host = self.host  # set up first: that takes llvmlite's lock inside its own
        # Held throughout, unlike a compile's: a compile forking from another thread
        # meanwhile would copy LLVM in the middle of its work into the child.
        with llvm.ffi.lib._lock:
            for text in split_modules(ir_text):
                module = parse(text, llvm.create_context())
                machine = host.target_machine(self.opt_level)
                optimize(module, machine, self.opt_level)
                optimized.append((module, machine))
        return optimized


def _check_resolvable(names: tuple[str, ...]) -> None:
    missing = [name for name in names if not llvm.address_of_symbol(name)]
    if missing:
        raise CompileError(f"LLVM IR calls undefined symbols: {', '.join(missing)}")


def _link(object_code: ObjectCode, machine: llvm.TargetMachine) -> NativeModule:
    placeholder = llvm.parse_assembly("")  # MCJIT wants a module; ours arrive as objects
    placeholder.triple = machine.triple
    execution_engine = llvm.create_mcjit_compiler(placeholder, machine)
    # Creating an MCJIT engine is also what makes the process's own symbols (libc, libm,
    # pthreads) visible to LLVM, so the check comes after it.
    _check_resolvable(object_code.externals)
    for part in object_code.parts:
        execution_engine.add_object_file(llvm.ObjectFileRef.from_data(part))
    execution_engine.finalize_object()
    return NativeModule(execution_engine, object_code)


_runtime_lock = threading.RLock()
_runtime_module: list = []  # the threading runtime, once linked


def _runtime() -> NativeModule:
    """The threading runtime (``threads.py``), linked once per process, its symbols made
    known to LLVM for the programs that call them. Its object code is kept in the disk
    cache like a program's, so a process that finds its programs there compiles nothing;
    otherwise it is compiled (alone, or with the first program, see
    `_compile_in_a_child`)."""
    if not _runtime_module:
        _compile_in_a_child([])  # links it from the disk cache if it is there
    return _runtime_module[0]


def _runtime_ir() -> str:
    return threads.runtime_ir(llvm_ready().host.triple)


# It is a few branches around pthread calls: O0 compiles it in a third of the time.
_RUNTIME_OPT_LEVEL = 0


@once
def runtime_key() -> str:
    """The key the threading runtime's object code is kept under in the disk cache."""
    from .cache import cache_key  # the cache builds on this module

    return cache_key(_runtime_ir(), Engine(_RUNTIME_OPT_LEVEL))


def _link_stored_runtime() -> bool:
    """Link the runtime from the disk cache if it is there (or already linked)."""
    from .cache import default_cache

    with _runtime_lock:
        if not _runtime_module:
            stored = default_cache().stored_object(runtime_key())
            if stored is not None:
                try:
                    _link_runtime(stored)
                except CompileError as error:  # intact, but not for this process
                    warnings.warn(f"tracegrad: ignoring the threading runtime in the "
                                  f"compile cache ({error}); compiling it anew",
                                  RuntimeWarning, stacklevel=2)
        return bool(_runtime_module)


def _link_runtime(object_code: ObjectCode) -> None:
    with _runtime_lock:
        if _runtime_module:  # two threads compiled it at once: the first one is kept
            return
        runtime = _link(object_code, llvm_ready().host.target_machine(_RUNTIME_OPT_LEVEL))
        for name in threads.EXPORTED:
            llvm.add_symbol(name, runtime.address(name))
        _runtime_module.append(runtime)


def _compile_in_a_child(requests: list[tuple[str, int]]) -> list[ObjectCode]:
    """`compile_side_by_side(requests)` in a child process (``compile_child.py``), so
    that LLVM's memory is never the caller's. The threading runtime comes along in the
    same child, side by side with the rest, if this process has yet to link it and the
    disk cache does not hold it (then it is linked, and stored)."""
    llvm_ready()  # set up here once, so every child starts with LLVM ready
    runtime_ir = None if _runtime_module else _runtime_ir()
    with_runtime = runtime_ir is not None and not _link_stored_runtime()
    if with_runtime:
        requests = [*requests, (runtime_ir, _RUNTIME_OPT_LEVEL)]
    if not requests:  # the runtime was on disk, and nothing else asked for
        return []
    try:
        objects = compile_child.in_child(compile_side_by_side, requests, threads.num_threads())
    except compile_child.ChildError as error:
        if error.kind == CompileError.__name__:
            raise CompileError(str(error)) from None
        raise CompileError(f"{error.kind} in the compile child: {error}\n"
                           f"{error.child_traceback}") from None
    except compile_child.ChildDied as died:
        raise CompileError(f"{died} while compiling this program") from None
    if with_runtime:
        runtime = objects.pop()
        _link_runtime(runtime)
        from .cache import default_cache

        default_cache().store_object(runtime_key(), runtime)
    return objects


@once
def default_engine() -> Engine:
    """The process's shared engine (O3)."""
    return Engine()
