"""Expressions and indices into IR at one point of a loop body.

`ValueEmitter` turns an expression DAG (`expr.py`) into IR at the builder's position,
memoised so a shared subexpression is emitted once per body; indices (`index.py`) become
`i64` arithmetic (`udiv`/`urem` only where a reshape left them), and an index read from
memory is wrapped (negative counts from the end, as in NumPy) and clamped into bounds.
"""

from __future__ import annotations

from llvmlite import ir

from . import index as ix
from .expr import Apply, Buffer, Literal, Load
from .llvm_types import I1, I64, MEMORY, REGISTER, constant, to_register
from .scalar import emit as emit_scalar


class ValueEmitter:
    """Emits expression DAGs and indices at one point of the code (memoised per point)."""

    def __init__(self, b: ir.IRBuilder, pointers: dict, variables: dict, globals_: dict):
        self.b, self.pointers, self.variables, self.globals = b, pointers, variables, globals_
        self._values: dict[int, ir.Value] = {}
        self._indices: dict[int, ir.Value] = {}

    def value(self, e) -> ir.Value:
        found = self._values.get(id(e))
        if found is None:
            found = self._values[id(e)] = self._emit(e)
        return found

    def _emit(self, e) -> ir.Value:
        b = self.b
        if isinstance(e, Literal):
            return constant(REGISTER[e.dtype], e.value)
        if isinstance(e, Load):
            loaded = b.load(self.address(e.buffer, e.offset), typ=MEMORY[e.dtype])
            loaded.align = e.dtype.itemsize
            return to_register(b, loaded, e.dtype)
        if isinstance(e, Apply):
            return emit_scalar(b, e.op, [self.value(a) for a in e.args], e.attrs)
        raise TypeError(f"cannot emit {e!r}")

    def address(self, buffer: Buffer, offset: ix.Index) -> ir.Value:
        base = self.pointers.get(buffer) or self._global(buffer)
        return self.b.gep(base, [self.index(offset)], inbounds=True,
                          source_etype=MEMORY[buffer.dtype])

    def _global(self, buffer: Buffer) -> ir.GlobalVariable:
        """A constant compiled into the module (made on first use)."""
        found = self.globals.get(buffer)
        if found is None:
            data = bytearray(buffer.data.astype(buffer.dtype.numpy, copy=False).tobytes())
            t = ir.ArrayType(ir.IntType(8), len(data))
            found = ir.GlobalVariable(self.b.module, t, name=buffer.name)
            found.initializer = ir.Constant(t, data)
            found.global_constant, found.linkage, found.align = True, "internal", 64
            self.globals[buffer] = found
        return found

    def index(self, i: ix.Index) -> ir.Value:
        found = self._indices.get(id(i))
        if found is None:
            found = self._indices[id(i)] = self._emit_index(i)
        return found

    def _emit_index(self, i: ix.Index) -> ir.Value:
        b = self.b
        total = None
        for atom, coef in i.terms:
            term = self._atom(atom)
            if coef != 1:
                term = b.mul(term, ir.Constant(I64, coef), flags=["nsw"])
            total = term if total is None else b.add(total, term, flags=["nsw"])
        if total is None:
            return ir.Constant(I64, i.const)
        return b.add(total, ir.Constant(I64, i.const), flags=["nsw"]) if i.const else total

    def _atom(self, atom) -> ir.Value:
        b = self.b
        if isinstance(atom, ix.Var):
            return self.variables[atom]
        if isinstance(atom, (ix.Div, ix.Mod)):
            inner = self.index(atom.inner)
            d = ir.Constant(I64, atom.divisor)
            if atom.inner.lo >= 0:  # the usual case: plain unsigned arithmetic
                return b.udiv(inner, d) if isinstance(atom, ix.Div) else b.urem(inner, d)
            q = b.sdiv(inner, d)
            r = b.srem(inner, d)
            fix = b.icmp_signed("<", r, ir.Constant(I64, 0))
            if isinstance(atom, ix.Div):
                return b.sub(q, b.zext(fix, I64))
            return b.select(fix, b.add(r, d), r)
        if isinstance(atom, ix.Indirect):  # a runtime index: wrap negatives, stay in bounds
            raw = self.value(atom.source)
            raw = b.sext(raw, I64) if raw.type.width < 64 and raw.type != I1 else raw
            raw = b.zext(raw, I64) if raw.type == I1 else raw
            size = ir.Constant(I64, atom.size)
            wrapped = b.select(b.icmp_signed("<", raw, ir.Constant(I64, 0)), b.add(raw, size),
                               raw)
            top = ir.Constant(I64, max(atom.size - 1, 0))
            wrapped = b.select(b.icmp_signed(">", wrapped, top), top, wrapped)
            return b.select(b.icmp_signed("<", wrapped, ir.Constant(I64, 0)),
                            ir.Constant(I64, 0), wrapped)
        raise TypeError(f"cannot emit index atom {atom!r}")
