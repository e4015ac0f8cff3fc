"""Index arithmetic: the affine expressions that say which element a loop touches.

A loop nest names its loop counters (`Var`s) and every buffer access is an `Index`: an
integer combination of *atoms* plus a constant. Atoms are the loop counters, integers read
from memory (`Indirect`, e.g. the indices of `take`) and the quotients and remainders that
reshapes introduce (`Div`, `Mod`). Each atom knows its range, which is what lets a reshape
of a reshape simplify back to plain affine arithmetic, so the innermost loop of a kernel
reads memory at unit stride and vectorises:

>>> i, j = Var("i", 4), Var("j", 5)
>>> flat = index(i) * 5 + index(j)       # (4, 5) viewed as (20,)
>>> str(flat // 5), str(flat % 5)        # ... and viewed back as (4, 5)
('i', 'j')
>>> str((flat // 5) * 5 + flat % 5)
'5*i + j'

Indices are interned (one object per distinct expression), so they compare and hash by
identity: the expression builder memoises on them cheaply.
"""

from __future__ import annotations

import math


class Atom:
    """Something an index is a combination of; `lo..hi` is its (inclusive) range."""

    lo: int
    hi: int
    _key: tuple


class Var(Atom):
    """A loop counter in `[0, size)`."""

    def __init__(self, name: str, size: int):
        self.name, self.size = name, size
        self.lo, self.hi = 0, max(size - 1, 0)
        self._key = ("var", id(self))

    def __str__(self) -> str:
        return self.name


class Indirect(Atom):
    """An index read from memory: `source` (a scalar expression) wrapped into `[0, size)`."""

    def __init__(self, source, size: int):
        self.source, self.size = source, size
        self.lo, self.hi = 0, max(size - 1, 0)
        self._key = ("indirect", id(source), size)

    def __str__(self) -> str:
        return f"[{self.source}]"


class Div(Atom):
    """`floor(inner / divisor)` that did not simplify away."""

    def __init__(self, inner: Index, divisor: int):
        self.inner, self.divisor = inner, divisor
        self.lo, self.hi = inner.lo // divisor, inner.hi // divisor
        self._key = ("div", id(inner), divisor)

    def __str__(self) -> str:
        return f"({self.inner})//{self.divisor}"


class Mod(Atom):
    """`inner mod divisor` (floor semantics) that did not simplify away."""

    def __init__(self, inner: Index, divisor: int):
        self.inner, self.divisor = inner, divisor
        self.lo, self.hi = 0, divisor - 1
        self._key = ("mod", id(inner), divisor)

    def __str__(self) -> str:
        return f"({self.inner})%{self.divisor}"


_ATOMS: dict[tuple, Atom] = {}
_INDICES: dict[tuple, Index] = {}


def _atom(cls, *args) -> Atom:
    made = cls(*args)
    return _ATOMS.setdefault(made._key, made)


class Index:
    """`sum(coef * atom) + const`, interned. Build with `index`, `+`, `*`, `//`, `%`."""

    __slots__ = ("__weakref__", "const", "hi", "lo", "terms")

    def __new__(cls, terms: tuple, const: int):
        key = (tuple((id(a), c) for a, c in terms), const)
        found = _INDICES.get(key)
        if found is not None:
            return found
        self = super().__new__(cls)
        self.terms, self.const = terms, const  # terms sorted by atom key, coefs nonzero
        self.lo = const + sum(c * (a.lo if c > 0 else a.hi) for a, c in terms)
        self.hi = const + sum(c * (a.hi if c > 0 else a.lo) for a, c in terms)
        _INDICES[key] = self
        return self

    # --- arithmetic --------------------------------------------------------------------
    def __add__(self, other: Index | int) -> Index:
        other = as_index(other)
        coefs: dict[Atom, int] = dict(self.terms)
        for atom, c in other.terms:
            coefs[atom] = coefs.get(atom, 0) + c
        return _make(coefs, self.const + other.const)

    __radd__ = __add__

    def __sub__(self, other: Index | int) -> Index:
        return self + as_index(other) * -1

    def __mul__(self, k: int) -> Index:
        if k == 0:
            return ZERO
        return _make({a: c * k for a, c in self.terms}, self.const * k)

    __rmul__ = __mul__

    def __floordiv__(self, d: int) -> Index:
        if d == 1:
            return self
        nested = _single_div(self)
        if nested is not None:  # (x // a) // d is x // (a*d): one canonical form
            return nested.inner // (nested.divisor * d)
        whole = {a: c // d for a, c in self.terms if c % d == 0}
        rest = Index(tuple((a, c) for a, c in self.terms if c % d), self.const % d)
        base = _make(whole, self.const // d)
        if rest.lo >= 0 and rest.hi < d:  # the remainder part never reaches a multiple of d
            return base
        split = _split_small(rest, d)
        if split is not None:  # rest = g*big + small with 0 <= small < g and g | d
            big, g = split
            return base + big // (d // g)
        g = math.gcd(d, *(c for _, c in rest.terms), rest.const)
        if g > 1:
            rest, d = _make({a: c // g for a, c in rest.terms}, rest.const // g), d // g
        return base + index(_atom(Div, rest, d))

    def __mod__(self, d: int) -> Index:
        if d == 1:
            return ZERO
        rest = Index(tuple((a, c) for a, c in self.terms if c % d), self.const % d)
        if rest.lo >= 0 and rest.hi < d:
            return rest
        split = _split_small(rest, d)
        if split is not None:
            big, g = split
            return (big % (d // g)) * g + (rest - big * g)
        return index(_atom(Mod, rest, d))

    # --- inspection --------------------------------------------------------------------
    def coefficient(self, atom: Atom) -> int:
        return dict(self.terms).get(atom, 0)

    def atoms(self) -> set:
        """Every atom this index depends on, also inside quotients and remainders."""
        found = set()
        for atom, _ in self.terms:
            found.add(atom)
            if isinstance(atom, (Div, Mod)):
                found |= atom.inner.atoms()
        return found

    def is_affine_in(self, variables) -> bool:
        """True if no loop counter of `variables` hides inside a quotient or remainder."""
        variables = set(variables)
        return not any(isinstance(a, (Div, Mod)) and a.inner.atoms() & variables
                       for a, _ in self.terms)

    def __str__(self) -> str:
        parts = [(str(a) if c == 1 else f"{c}*{a}") for a, c in self.terms]
        if self.const or not parts:
            parts.append(str(self.const))
        return " + ".join(parts)

    __repr__ = __str__


def _make(coefs: dict, const: int) -> Index:
    coefs = {a: c for a, c in coefs.items() if c}
    const += _merge_div_mod(coefs)
    coefs = {a: c for a, c in coefs.items() if c}
    return Index(tuple(sorted(coefs.items(), key=lambda t: _order(t[0]))), const)


def _order(atom: Atom) -> tuple:
    kind = {"var": 0, "div": 1, "mod": 2, "indirect": 3}[atom._key[0]]
    return (kind, getattr(atom, "name", ""), atom._key[1:] if kind else ())


def _merge_div_mod(coefs: dict) -> int:
    """`k*d*(x//d) + k*(x%d)` is `k*x`: the rule that undoes a reshape's split.

    Rewrites `coefs` in place and returns the constant that the merged `x` brings."""
    extra = 0
    merged = True
    while merged:
        merged = False
        for atom in [a for a in coefs if isinstance(a, Mod)]:
            k = coefs.get(atom)
            partner = _ATOMS.get(("div", id(atom.inner), atom.divisor))
            nested = _single_div(atom.inner)
            if partner is None and nested is not None:  # x//a % d pairs with x//(a*d)
                partner = _ATOMS.get(("div", id(nested.inner), nested.divisor * atom.divisor))
            if k and partner is not None and coefs.get(partner) == k * atom.divisor:
                del coefs[atom], coefs[partner]
                for a, c in atom.inner.terms:
                    coefs[a] = coefs.get(a, 0) + k * c
                extra += k * atom.inner.const
                merged = True
                break
    return extra


def _split_small(x: Index, d: int):
    """`(big, g)` with `x = g*big + small`, `g > 1` dividing `d` and `0 <= small < g`."""
    terms = sorted(x.terms, key=lambda t: -abs(t[1]))
    for t in range(1, len(terms)):
        g = math.gcd(d, *(c for _, c in terms[:t]))
        if g == 1:
            break
        small = Index(tuple(sorted(terms[t:], key=lambda t: _order(t[0]))), x.const % g)
        if small.lo >= 0 and small.hi < g:
            big = _make({a: c // g for a, c in terms[:t]}, x.const // g)
            return big, g
    return None


def _single_div(x: Index) -> Div | None:
    if x.const == 0 and len(x.terms) == 1 and x.terms[0][1] == 1 and \
            isinstance(x.terms[0][0], Div):
        return x.terms[0][0]
    return None


def index(atom: Atom | int) -> Index:
    """The index that is just `atom` (or a constant)."""
    if isinstance(atom, int):
        return Index((), atom)
    return Index(((atom, 1),), 0)


def as_index(x: Index | int) -> Index:
    return x if isinstance(x, Index) else Index((), int(x))


ZERO = Index((), 0)


def linear(indices, shape: tuple) -> Index:
    """The row-major offset of `indices` into an array of `shape`."""
    offset, stride = ZERO, 1
    for i, size in zip(reversed(indices), reversed(shape)):
        if size != 1:
            offset = offset + i * stride
        stride *= size
    return offset


def delinearize(offset: Index, shape: tuple) -> tuple:
    """The multi-index of row-major position `offset` in an array of `shape`."""
    out, stride = [], 1
    for size in reversed(shape):
        out.append(ZERO if size == 1 else (offset // stride) % size)
        stride *= size
    return tuple(reversed(out))
