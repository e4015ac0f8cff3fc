"""The runtime: turns LLVM IR into native code and runs it on buffers.

It knows nothing of tensors or the compiler (SPEC §2); it arrives with the LLVM backend.
"""
