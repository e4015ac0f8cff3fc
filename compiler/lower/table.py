"""How a caller and a compiled program meet: the entry point's name and its table.

A program is one function, `i64 program(ptr %table)` (emitted by `program.py`), and
`table` is an array of pointers the caller fills once per call:

    table[INPUTS]          a tuple of the input arrays (NumPy objects: the program checks
                           each and reads its data pointer, `runtime/object_layout.py`)
    table[OUTPUTS]         a tuple of the output arrays, made for the call and written in
                           place, NumPy objects too
    table[ARENA]           the arena (64-byte aligned; temporaries at planned offsets)
    table[EXPECTED]        what the inputs must be (`expected_inputs`)
    table[CONSTANTS ..)    large constants (small ones are globals in the module)

This is apart from the code generator because a program found in the disk cache is run
from it without being lowered: that call then imports none of the generator.

>>> expected_inputs([((2, 3), "float32")])[[0, 3, 4, 5]].tolist()
[1, 2, 2, 3]
"""

from __future__ import annotations

import numpy as np

ENTRY = "program"
INPUTS, OUTPUTS, ARENA, EXPECTED, CONSTANTS = range(5)  # the table's slots (see above)


def expected_inputs(inputs) -> np.ndarray:
    """What `check_inputs` compares the inputs with, from their (shape, dtype) pairs: their
    count and the address of `np.ndarray`, then per input the address of NumPy's object
    for its dtype, its ndim and its dimensions. (Addresses of this process: it is made
    for each process, never stored.)"""
    words = [len(inputs), id(np.ndarray)]
    for shape, dtype in inputs:
        words += [id(np.dtype(dtype)), len(shape), *shape]
    return np.array(words, dtype=np.int64)
