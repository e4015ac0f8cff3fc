"""What a compiled program needs beside its machine code, stored with it on disk.

Lowering a graph to LLVM IR costs tens of milliseconds in Python, and the runtime cache's
usual key is a hash of that IR, so even a warm cache paid for it. A program is therefore
also stored under a key computed *before* lowering, together with its `Binding`: how the
caller's arrays and the constants fill the buffer table, the arena's size, and where each
graph output comes from. A hit skips scheduling, lowering and LLVM altogether.

The key must change whenever the machine code could. It hashes:

* the graph, exactly (`ir_text.digest_graph`: its text, arrays by the hash of their
  bytes);
* the lowering options: `fuse`, and the matmul backend (`blas.BACKEND`, which
  ``TRACEGRAD_MATMUL`` sets);
* the source of every module of the compiler and the runtime, so editing or upgrading
  tracegrad never loads code made by another version;
* NumPy's version and the offsets in Python's objects the IR hard-codes
  (`runtime/object_layout.py`), and the BLAS library whose symbols it calls;
* the Python version, and (through `runtime.cache.cache_key`) llvmlite, LLVM, the target
  triple, the CPU name and features and LLVM's pipeline tuning.

An entry that fails its checksum or does not decode is rebuilt, never trusted.

>>> Binding(arena_bytes=64, outputs=[((2,), "float32")], tables=[],
...         results=[("out", 0)], kernel_names=["k0_exp"], uses_blas=False).to_bytes()[:1]
b'{'
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import sys
from dataclasses import dataclass

import numpy as np

from ...runtime.once import once
from ..ir_text import digest_graph
from . import blas


@once
def compiler_fingerprint() -> str | None:
    """A hash of the compiler's and the runtime's source files, or None if they cannot
    be read (then programs are not stored by graph: a key must never miss a change)."""
    from ...runtime import engine

    packages = [pathlib.Path(__file__).resolve().parents[1],  # compiler/
                pathlib.Path(engine.__file__).resolve().parent]  # runtime/
    try:
        digest = hashlib.sha256()
        for package in packages:
            files = sorted(package.rglob("*.py"))
            if not files:
                return None
            for path in files:
                digest.update(str(path.relative_to(package)).encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()
    except OSError:
        return None


def program_key(graph, fuse: bool, engine) -> str | None:
    """The key a program for `graph` is stored under, or None if it cannot be stored."""
    from ...runtime.cache import cache_key
    from ...runtime.object_layout import object_layout

    fingerprint = compiler_fingerprint()
    if fingerprint is None:
        return None
    library = blas.find_blas()
    parts = ["stored-program 3", f"compiler={fingerprint}", f"fuse={fuse}",
             f"matmul={blas.BACKEND!r}", f"blas={library!r}", f"python={sys.version_info[:2]}",
             f"numpy={np.__version__}", f"objects={object_layout().describe()}",
             f"graph={digest_graph(graph)}"]
    return cache_key("\n".join(parts), engine)


@dataclass
class Binding:
    """How a compiled program meets its caller (`NativeProgram` runs from this alone).

    arena_bytes:  the size of the arena
    outputs:      per output array a call makes: (shape, dtype name)
    tables:       the large constants, in table order
    results:      per graph output: ("out", k) | ("in", i) | ("const", array)
    """

    arena_bytes: int
    outputs: list
    tables: list
    results: list
    kernel_names: list
    uses_blas: bool

    def to_bytes(self) -> bytes:
        """JSON, then the arrays' bytes (`np.save` format) after a newline."""
        arrays = list(self.tables) + [what for kind, what in self.results if kind == "const"]
        blob = io.BytesIO()
        sizes = []
        for array in arrays:
            start = blob.tell()
            np.save(blob, np.ascontiguousarray(array), allow_pickle=False)
            sizes.append(blob.tell() - start)
        constants = iter(range(len(self.tables), len(arrays)))
        header = {"arena_bytes": self.arena_bytes,
                  "outputs": [[list(shape), dtype] for shape, dtype in self.outputs],
                  "tables": len(self.tables), "array_sizes": sizes,
                  "results": [[kind, next(constants) if kind == "const" else what]
                              for kind, what in self.results],
                  "kernel_names": self.kernel_names, "uses_blas": self.uses_blas}
        return json.dumps(header).encode() + b"\n" + blob.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Binding:
        """The binding `to_bytes` wrote; ValueError if `data` is anything else."""
        end = data.find(b"\n")
        try:
            header = json.loads(data[:end])
            arrays, offset = [], end + 1
            for size in header["array_sizes"]:
                arrays.append(np.load(io.BytesIO(data[offset:offset + size]), allow_pickle=False))
                offset += size
            if offset != len(data):
                raise ValueError("trailing bytes")
            tables = arrays[:header["tables"]]
            results = [(kind, arrays[what] if kind == "const" else int(what))
                       for kind, what in header["results"]]
            outputs = [(tuple(shape), str(dtype)) for shape, dtype in header["outputs"]]
            return cls(int(header["arena_bytes"]), outputs, tables,
                       results, list(header["kernel_names"]), bool(header["uses_blas"]))
        except (KeyError, TypeError, IndexError, EOFError, OSError) as error:
            raise ValueError(f"not a stored program binding ({error})") from None
