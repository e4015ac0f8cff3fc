"""The runtime: turns LLVM IR into native code and runs it on buffers.

It knows nothing of tensors or the compiler (SPEC §2); it arrives with the LLVM backend,
so nothing is imported here: ``import tracegrad`` must not load llvmlite.

* ``engine``  - parse, verify, optimise (O3, host CPU), emit object code, load with MCJIT;
* ``compile_child`` - the optimising and emitting done in a forked child process;
* ``cache``   - compiled programs in memory and on disk (``TRACEGRAD_CACHE_DIR``);
* ``buffers`` - 64-byte-aligned arenas that a program reuses call after call;
* ``threads`` - ``tracegrad_parallel_for`` and ``TRACEGRAD_NUM_THREADS``.
"""
