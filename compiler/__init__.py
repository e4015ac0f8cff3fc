"""The compiler: the op set (`ops`) that every layer shares, and, as it grows, tracing,
the graph IR, autodiff on the IR, passes and the LLVM lowering.

It knows the op set and the IR, never `Tensor` (SPEC §2).
"""
