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

Steps 1-4 run in a child process (``compile_child.py``), so LLVM's memory stays out of
the caller's. A text may hold several modules, each from its ``; ModuleID`` line on (a
program comes as one module per kernel, ``compiler/lower/program.py``): they are linked
into a few groups of about the same size, which compile on up to
``TRACEGRAD_NUM_THREADS`` threads, each in an LLVM context of its own, and step 5 loads
the groups' objects into one engine, where they call each other's functions.

>>> native = default_engine().compile_module(
...     "define i64 @twice(i64 %x) {\n  %y = add i64 %x, %x\n  ret i64 %y\n}", ["twice"])
>>> import ctypes
>>> native.function("twice", ctypes.c_int64, [ctypes.c_int64])(21)
42
"""

from __future__ import annotations

import ctypes
import re
import threading
from dataclasses import dataclass

import llvmlite
import llvmlite.binding as llvm

from . import compile_child, threads
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
    """A compiled program: one relocatable object per module, and the outside symbols
    they call (those no part defines)."""

    parts: tuple[bytes, ...]
    externals: tuple[str, ...]


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
        return _process().host

    def compile_module(self, ir_text: str, entry_points: list[str]) -> NativeModule:
        """Compile and load ``ir_text``; ``entry_points`` must be functions it defines."""
        return self.load_object(self.compile_object(ir_text), entry_points)

    def compile_object(self, ir_text: str) -> ObjectCode:
        """Steps 1-4: the relocatable object code for ``ir_text``, made by
        ``compile_here`` in a child process."""
        object_code = _compile(ir_text, self.opt_level)
        _runtime()  # the threading runtime's symbols, which programs call
        _check_resolvable(object_code.externals)
        return object_code

    def compile_here(self, ir_text: str, thread_count: int | None = None) -> ObjectCode:
        """Steps 1-4 in this process, the modules side by side on up to ``thread_count``
        threads (default ``TRACEGRAD_NUM_THREADS``)."""
        return compile_side_by_side([(ir_text, self.opt_level)], thread_count)[0]

    def load_object(self, object_code: ObjectCode, entry_points: list[str]) -> NativeModule:
        """Step 5: load machine code made by ``compile_object`` (now or in another process)."""
        _runtime()
        with self._lock:
            native = _link(object_code, self.host.target_machine(self.opt_level))
        native.require(entry_points)
        return native

    def optimized_ir(self, ir_text: str) -> str:
        """The modules as LLVM's optimiser leaves them (``tracegrad ir --stage llvm``)."""
        return "\n".join(str(module) for module, _ in self._optimized(ir_text))

    def assembly(self, ir_text: str) -> str:
        """Host assembly for ``ir_text`` (``tracegrad ir --stage asm``)."""
        return "\n".join(machine.emit_assembly(module)
                         for module, machine in self._optimized(ir_text))

    def _optimized(self, ir_text: str) -> list[tuple[llvm.ModuleRef, llvm.TargetMachine]]:
        optimized = []
        # Held throughout, unlike a compile's: a compile forking from another thread
        # meanwhile would copy LLVM in the middle of its work into the child.
        with llvm.ffi.lib._lock:
            for text in split_modules(ir_text):
                module = _parse(text, llvm.create_context())
                machine = self.host.target_machine(self.opt_level)
                _optimize(module, machine, self.opt_level)
                optimized.append((module, machine))
        return optimized


def compile_side_by_side(requests: list[tuple[str, int]],
                         thread_count: int | None = None) -> list[ObjectCode]:
    """The object code per ``(ir_text, opt_level)``: the modules of each text linked into
    groups (`balanced_groups`), and all groups compiled on up to ``thread_count`` threads
    (default ``TRACEGRAD_NUM_THREADS``), the largest first."""
    thread_count = thread_count or threads.num_threads()
    jobs = [(group, opt_level, r) for r, (ir_text, opt_level) in enumerate(requests)
            for group in balanced_groups(split_modules(ir_text), thread_count)]
    order = sorted(range(len(jobs)), key=lambda j: -sum(map(len, jobs[j][0])))
    compiled = dict(zip(order, _side_by_side(_compile_group, [jobs[j] for j in order],
                                             thread_count)))
    objects = []
    for r in range(len(requests)):
        parts = [compiled[j] for j, (_, _, owner) in enumerate(jobs) if owner == r]
        defined = {name for _, _, names in parts for name in names}
        externals = sorted({name for _, used, _ in parts for name in used} - defined)
        objects.append(ObjectCode(tuple(code for code, _, _ in parts), tuple(externals)))
    return objects


# LLVM takes about 2 ms per 1000 characters of our IR, and each module it optimises costs
# some 10 ms more; a group is one module. So there are as many groups as threads, and
# only if each gets at least this much text: the small MLP step (89,000 characters in
# 12 modules) compiles in 180 ms as one module, 105 ms as two groups on two cores, and
# 115-150 ms as three or four.
GROUP_CHARACTERS = 16_000


def balanced_groups(texts: list[str], count: int) -> list[list[str]]:
    """``texts`` (modules) dealt into at most ``count`` groups of about the same length,
    the longest first, each with at least `GROUP_CHARACTERS` (but one).

    >>> [[len(t) for t in group] for group in balanced_groups(["a" * 20000] * 3 + ["b"], 4)]
    [[20000, 1], [20000], [20000]]
    """
    total = sum(map(len, texts))
    loads = [0] * max(1, min(count, total // GROUP_CHARACTERS, len(texts)))
    groups: list[list[str]] = [[] for _ in loads]
    for text in sorted(texts, key=len, reverse=True):
        g = loads.index(min(loads))
        groups[g].append(text)
        loads[g] += len(text)
    return groups


def _compile_group(job: tuple[list[str], int, int]) -> tuple[bytes, tuple, list]:
    """A group's object code (its modules linked into one, in a context of its own), the
    symbols it uses and those it defines."""
    texts, opt_level, _ = job
    context = llvm.create_context()
    module = _parse(texts[0], context)
    for text in texts[1:]:
        module.link_in(_parse(text, context))  # renames clashing internal symbols
    machine = _process().host.target_machine(opt_level)
    _optimize(module, machine, opt_level)
    code = _emit_object(machine, module)
    defined = [fn.name for fn in module.functions if not fn.is_declaration]
    return code, _external_symbols(module), defined


def split_modules(ir_text: str) -> list[str]:
    """The modules of ``ir_text``: a new one starts at each ``; ModuleID`` line.

    >>> split_modules("; ModuleID = 'a'\\n; ModuleID = 'b'\\n")
    ["; ModuleID = 'a'\\n", "; ModuleID = 'b'\\n"]
    """
    return [text for text in re.split(r"(?m)^(?=; ModuleID)", ir_text) if text] or [ir_text]


def _side_by_side(work, items: list, threads_wanted: int) -> list:
    """``[work(item) for item in items]`` on up to ``threads_wanted`` threads (this one
    included); the first exception raised is raised here, after every thread is done."""
    results: list = [None] * len(items)
    errors: list = []
    pending = iter(range(len(items)))
    claim = threading.Lock()

    def run() -> None:
        while not errors:
            with claim:
                i = next(pending, None)
            if i is None:
                return
            try:
                results[i] = work(items[i])
            except BaseException as error:  # noqa: BLE001 - re-raised by the caller
                errors.append(error)

    helpers = [threading.Thread(target=run, daemon=True)
               for _ in range(min(threads_wanted, len(items)) - 1)]
    for helper in helpers:
        helper.start()
    run()
    for helper in helpers:
        helper.join()
    if errors:
        raise errors[0]
    return results


def _parse(ir_text: str, context: llvm.ContextRef | None = None) -> llvm.ModuleRef:
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


def _optimize(module: llvm.ModuleRef, machine: llvm.TargetMachine, opt_level: int) -> None:
    module.triple = machine.triple
    module.data_layout = str(machine.target_data)
    options = pipeline_options(opt_level)
    tuning = llvm.create_pipeline_tuning_options(speed_level=options.pop("speed_level"))
    for name, value in options.items():
        setattr(tuning, name, value)
    builder = llvm.create_pass_builder(machine, tuning)
    _unlocked("LLVMPY_RunNewModulePassManager", builder.getModulePassManager(), module, builder)


def _emit_object(machine: llvm.TargetMachine, module: llvm.ModuleRef) -> bytes:
    """``machine.emit_object(module)``, without llvmlite's lock (see `_unlocked`)."""
    with llvm.ffi.OutputString() as error:
        buffer = _unlocked("LLVMPY_TargetMachineEmitToMemory", machine, module, 1, error)
        if not buffer:
            raise CompileError(f"LLVM could not emit an object: {error}")
    try:
        return ctypes.string_at(llvm.ffi.lib.LLVMPY_GetBufferStart(buffer),
                                llvm.ffi.lib.LLVMPY_GetBufferSize(buffer))
    finally:
        llvm.ffi.lib.LLVMPY_DisposeMemoryBuffer(buffer)


def _unlocked(name: str, *args):
    """Call llvmlite's C function ``name`` without the one lock llvmlite holds around
    every call. That lock is for LLVM's global context; optimising and emitting touch only
    their own module, context and target machine, which LLVM allows on several threads at
    once, and they are most of a compile: held, the lock would make the parts of a program
    compile one after the other. (``_cfn`` is llvmlite's unwrapped ctypes function; an
    llvmlite without it gets the locked call.)"""
    function = getattr(llvm.ffi.lib, name)
    return getattr(function, "_cfn", function)(*args)


def _external_symbols(module: llvm.ModuleRef) -> tuple[str, ...]:
    """Functions and globals the module uses but does not define (intrinsics excluded)."""
    declared = [*module.functions, *module.global_variables]
    return tuple(sorted(value.name for value in declared
                        if value.is_declaration and not value.name.startswith("llvm.")))


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


@dataclass(frozen=True)
class _Process:
    host: HostTarget


@once
def _process() -> _Process:
    """Set LLVM up once per process: native target, symbols, the host's description."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    for name, address in threads.native_symbols().items():
        llvm.add_symbol(name, address)
    return _Process(HostTarget.detect())


_runtime_lock = threading.RLock()
_runtime_module: list = []  # the threading runtime, once linked


def _runtime() -> NativeModule:
    """The threading runtime (``threads.py``), linked once per process, its symbols made
    known to LLVM for the programs that call them. Its object code is kept in the disk
    cache like a program's, so a process that finds its programs there compiles nothing;
    otherwise it is compiled (alone, or with the first program, see `_compile`)."""
    if not _runtime_module and not _link_stored_runtime(_runtime_ir()):
        _compile_in_a_child([])
    return _runtime_module[0]


def _runtime_ir() -> str:
    return threads.runtime_ir(_process().host.triple)


# It is a few branches around pthread calls: O0 compiles it in a third of the time.
_RUNTIME_OPT_LEVEL = 0


def _link_stored_runtime(ir_text: str) -> bool:
    """Link the runtime from the disk cache if it is there (or already linked)."""
    from .cache import default_cache  # the cache builds on this module

    with _runtime_lock:
        if not _runtime_module:
            stored = default_cache().stored_object(ir_text, Engine(_RUNTIME_OPT_LEVEL))
            if stored is not None:
                _link_runtime(stored)
        return bool(_runtime_module)


def _link_runtime(object_code: ObjectCode) -> None:
    with _runtime_lock:
        if _runtime_module:  # two threads compiled it at once: the first one is kept
            return
        runtime = _link(object_code, _process().host.target_machine(_RUNTIME_OPT_LEVEL))
        for name in threads.EXPORTED:
            llvm.add_symbol(name, runtime.address(name))
        _runtime_module.append(runtime)


def _compile(ir_text: str, opt_level: int) -> ObjectCode:
    """The object code for ``ir_text`` at ``opt_level``, compiled in a child process."""
    return _compile_in_a_child([(ir_text, opt_level)])[0]


def _compile_in_a_child(requests: list[tuple[str, int]]) -> list[ObjectCode]:
    """`compile_side_by_side(requests)` in a child process (``compile_child.py``), so
    that LLVM's memory is never the caller's. The threading runtime comes along in the
    same child, side by side with the rest, if this process has yet to link it and the
    disk cache does not hold it (then it is linked, and stored)."""
    _process()  # set up here once, so every child starts with LLVM ready
    runtime_ir = _runtime_ir()
    with_runtime = not _link_stored_runtime(runtime_ir)
    if with_runtime:
        requests = [*requests, (runtime_ir, _RUNTIME_OPT_LEVEL)]
    try:
        compiled = compile_child.in_child(_compile_requests, requests, threads.num_threads())
    except compile_child.ChildError as error:
        kind = "" if error.kind == CompileError.__name__ else f"{error.kind}: "
        raise CompileError(f"{kind}{error}") from None
    except compile_child.ChildDied as died:
        raise CompileError(f"{died} while compiling this program") from None
    objects = [ObjectCode(tuple(parts), tuple(externals)) for parts, externals in compiled]
    if with_runtime:
        runtime = objects.pop()
        _link_runtime(runtime)
        from .cache import default_cache

        default_cache().store_object(runtime_ir, Engine(_RUNTIME_OPT_LEVEL), runtime)
    return objects


def _compile_requests(requests: list, thread_count: int) -> list:
    """What the child computes: per request, its objects and externals as built-ins."""
    return [(list(code.parts), list(code.externals))
            for code in compile_side_by_side(requests, thread_count)]


@once
def default_engine() -> Engine:
    """The process's shared engine (O3)."""
    return Engine()
