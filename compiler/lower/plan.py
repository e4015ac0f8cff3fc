"""From kernels (groups of IR nodes) to loop nests over buffers.

A *kernel* is a list of nodes that run together; the scheduler (`compiler/schedule.py`)
makes them by fusion, and when it is absent every node is a kernel of its own
(`trivial_kernels`). Inside a kernel, elementwise and movement nodes are computed inline
where they are read; a value is written to memory only when something outside the kernel
needs it (a later kernel, the caller) or when its op needs it in memory (a reduction's
result, a matmul's operands). Every buffer is a `expr.Buffer`: the caller's inputs and
outputs, the program's arena, or constants.

>>> from tracegrad.compiler.ir_text import parse_graph
>>> g = parse_graph('''def f(x0: f32[4]):
...     v0 = exp(x0)
...     v1 = mul(v0, 2.0)
...     return (v1,)''')
>>> [k.name for k in trivial_kernels(g)]
['k0_exp', 'k1_mul']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import Graph, Node, Value
from ..passes.eliminate_common_subexpressions import expression_key
from . import index as ix
from .expr import Buffer, ExpressionBuilder
from .lowering import NESTS, NestContext, _matmul, decompose, lowering_of, swaps_last_two
from .nests import MapNest, Store
from .scalar import EXPENSIVE

GLOBAL_CONSTANT_BYTES = 1 << 16  # larger constants are passed in the buffer table
STORE_COST = 0.4  # ns per element: an op this costly is stored rather than recomputed


@dataclass
class Kernel:
    """Nodes that run as one unit; `outputs` are the values others read (may be empty:
    then anything read outside the kernel, or returned, is written anyway)."""

    name: str
    nodes: list
    outputs: list = field(default_factory=list)


@dataclass
class KernelPlan:
    name: str
    nests: list  # MapNest / ReduceNest, in the order they run


@dataclass
class ProgramPlan:
    graph: Graph
    inputs: list  # Buffer per graph input
    outputs: dict  # Value -> Buffer of kind "output", in first-appearance order
    kernels: list  # KernelPlan
    constants: dict  # Value -> Buffer of kind "global"/"table", or a Python scalar


def trivial_kernels(graph: Graph) -> list:
    """One kernel per node (constants are data, not kernels)."""
    nodes = [n for n in graph.nodes if n.op != "constant"]
    return [Kernel(f"k{i}_{n.op}", [n], [n.out]) for i, n in enumerate(nodes)]


def kernel_name(index: int, nodes: list) -> str:
    """`k3_mul_add_relu`: the position and the ops, for readable IR and assembly."""
    ops = [n.op for n in nodes if n.op != "constant"]
    name = "_".join(dict.fromkeys(ops)) or "const"
    return f"k{index}_{name[:48]}"


def plan_program(graph: Graph, kernels: list) -> ProgramPlan:
    """The loop nests of every kernel, and which values live in which buffers."""
    buffers: dict[Value, Buffer] = {}
    inputs = []
    for i, v in enumerate(graph.inputs):
        inputs.append(Buffer(v.name, v.shape, v.dtype, "input"))
        buffers.setdefault(v, inputs[-1])
    scalars, constants = {}, {}
    for node in graph.nodes:
        if node.op == "constant":
            constants[node.out] = _constant(node, buffers, scalars)
    returned = [v for v in dict.fromkeys(graph.outputs) if v in graph.producers()
                and graph.producers()[v].op != "constant"]
    outputs = {v: Buffer(v.name, v.shape, v.dtype, "output") for v in returned}
    needed = _needed_outside(graph, kernels)
    plans = [_plan_kernel(k, buffers, scalars, outputs, needed) for k in kernels]
    return ProgramPlan(graph, inputs, outputs, plans, constants)


def _constant(node: Node, buffers: dict, scalars: dict):
    value = node.attrs["value"]
    if value.size == 1:
        scalars[node.out] = value.reshape(-1)[0].item()
        return scalars[node.out]
    kind = "global" if value.nbytes <= GLOBAL_CONSTANT_BYTES else "table"
    buffers[node.out] = Buffer(f"{node.out.name}_const", value.shape, node.out.dtype, kind,
                               np.ascontiguousarray(value))
    return buffers[node.out]


def _needed_outside(graph: Graph, kernels: list) -> set:
    """Values read by a kernel other than the one that makes them, or returned."""
    home = {n.out: k for k, kernel in enumerate(kernels) for n in kernel.nodes}
    needed = set(graph.outputs)
    for k, kernel in enumerate(kernels):
        needed.update(kernel.outputs)
        for node in kernel.nodes:
            for x in node.inputs:
                if isinstance(x, Value) and home.get(x, k) != k:
                    needed.add(x)
    return needed


def _plan_kernel(kernel: Kernel, buffers: dict, scalars: dict, outputs: dict,
                 needed: set) -> KernelPlan:
    nodes, fused, internal = [], set(), set()
    for node in kernel.nodes:
        if node.op == "constant":
            continue
        if lowering_of(node.op).kind == "decompose":
            parts = decompose(node)
            nodes += parts
            fused.add(node.out)
            internal.update(n.out for n in parts[:-1])
        else:
            nodes.append(node)
    nodes = _share_repeated(nodes, internal)
    # A fused op's result (softmax, layer_norm, ...) that other nodes here read is
    # stored: inline, every later loop nest would redo its exps and reductions.
    read_here = {x for n in nodes for x in n.inputs if isinstance(x, Value)}
    needed = _store_shared_expensive(nodes, needed | (fused & read_here))
    producers = {n.out: n for n in nodes}
    nests, pending = [], []

    def snapshot():
        return ExpressionBuilder(producers, dict(buffers), scalars)

    def place(value) -> Buffer:
        return outputs.get(value) or Buffer(value.name, value.shape, value.dtype, "arena",
                                            value=value)

    def flush():
        by_shape: dict[tuple, list] = {}
        for v in pending:
            by_shape.setdefault(v.shape, []).append(v)
        for shape, values in by_shape.items():
            nests.append(_map_nest(snapshot(), shape, [(v, place(v)) for v in values]))
            for v in values:
                buffers[v] = nests[-1].targets[v]
        pending.clear()

    def materialize(value) -> Buffer:
        if value not in buffers:
            pending.append(value)
            flush()
        return buffers[value]

    context = NestContext(snapshot, nests, materialize)
    transposed = _transposed_products(nodes, needed)
    for node in nodes:
        if node.out in transposed.values():
            continue  # made by the permute that swaps it (below)
        if node in transposed:
            flush()
            target = place(node.out)
            _matmul(context, producers[transposed[node]], target, transposed=True)
            buffers[node.out] = target
            continue
        if lowering_of(node.op).kind == "inline":
            if node.out in needed:
                pending.append(node.out)
            continue
        flush()
        target = place(node.out)
        NESTS[node.op](context, node, target)
        buffers[node.out] = target
    flush()
    return KernelPlan(kernel.name, nests)


def _share_repeated(nodes: list, internal: set) -> list:
    """`nodes` without the ones that repeat an earlier node's work, their readers reading
    the earlier value: decompositions repeat each other (layer_norm_backward recomputes the
    1/std of layer_norm). The graph pass's test of sameness (`expression_key`); only the
    `internal` values of decompositions are dropped."""
    seen, alias, kept = {}, {}, []
    for node in nodes:
        inputs = [alias.get(x, x) if isinstance(x, Value) else x for x in node.inputs]
        if inputs != node.inputs:
            node = Node(node.op, inputs, node.attrs, node.out, node.loc)
        earlier = seen.setdefault(expression_key(node.op, inputs, node.attrs), node.out)
        if earlier is not node.out and node.out in internal \
                and (earlier.shape, earlier.dtype) == (node.out.shape, node.out.dtype):
            alias[node.out] = earlier
            continue
        kept.append(node)
    return kept


def _store_shared_expensive(nodes: list, needed: set) -> set:
    """`needed` plus the transcendental values (an exp, a tanh...) that two or more loop
    nests would compute inline: a softmax's exps are summed in one nest and divided in
    the next, and storing them once is cheaper than computing them twice."""
    readers: dict = {}
    for n in nodes:
        for x in n.inputs:
            if isinstance(x, Value):
                readers.setdefault(x, []).append(n)
    needed, sinks = set(needed), {}
    for node in reversed(nodes):
        found = set()
        for r in readers.get(node.out, []):
            if lowering_of(r.op).kind != "inline" or r.out in needed:
                found.add(r)
            else:
                found |= sinks[r.out]
        sinks[node.out] = found
        if node.op in EXPENSIVE and EXPENSIVE[node.op] >= STORE_COST and len(found) > 1 \
                and lowering_of(node.op).kind == "inline":
            needed.add(node.out)
    return needed


def _transposed_products(nodes: list, needed: set) -> dict:
    """{permute node: matmul output} for products read only through a swap of their last
    two axes: the swapped product is computed directly (`lowering._matmul`)."""
    readers: dict = {}
    for n in nodes:
        for x in n.inputs:
            if isinstance(x, Value):
                readers.setdefault(x, []).append(n)
    found = {}
    for n in nodes:
        users = readers.get(n.out, [])
        if n.op == "matmul" and n.out not in needed and len(users) == 1 \
                and swaps_last_two(users[0]):
            found[users[0]] = n.out
    return found


def _map_nest(builder: ExpressionBuilder, shape: tuple, targets: list) -> MapNest:
    def body(idx):
        return [Store(buf, ix.linear(idx, shape), builder.at(v, idx)) for v, buf in targets]

    nest = MapNest(shape, body, label="_".join(v.name for v, _ in targets))
    nest.targets = dict(targets)
    return nest
