"""Split a joint forward+backward graph into the forward and the backward programs.

The joint graph's inputs are the forward's inputs plus one cotangent per differentiable
output; its outputs are the forward's outputs followed by the input gradients. Nodes that
depend on a cotangent belong to the backward; every other node runs in the forward, and
the forward values the backward reads are *saved*: extra forward outputs that become
backward inputs.

    joint(x, w, g):  v0 = mul(x, w); v1 = sin(v0); v2 = cos(v0); v3 = mul(g, v2)
                     return (v1 | v3)
    forward(x, w):   v0 = mul(x, w); v1 = sin(v0); v2 = cos(v0); return (v1, v2)
    backward(g, v2): v3 = mul(g, v2); return (v3,)
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Graph, Value, verify


@dataclass
class Partition:
    forward: Graph  # outputs: the joint's forward outputs, then the saved values
    backward: Graph  # inputs: the cotangents, then the saved values
    saved: list  # forward values the backward reads


def partition_joint(joint: Graph, cotangents: list, forward_count: int) -> Partition:
    """Split `joint` (see the module docstring); `forward_count` outputs are forward's."""
    tainted = set(cotangents)
    backward_nodes, forward_nodes = [], []
    for node in joint.nodes:
        if any(isinstance(x, Value) and x in tainted for x in node.inputs):
            tainted.add(node.out)
            backward_nodes.append(node)
        else:
            forward_nodes.append(node)
    forward_values = set(joint.inputs) - set(cotangents) | {n.out for n in forward_nodes}
    saved = list(dict.fromkeys(
        x for node in backward_nodes for x in node.inputs
        if isinstance(x, Value) and x in forward_values))
    grads = joint.outputs[forward_count:]
    saved += [g for g in dict.fromkeys(grads) if g in forward_values and g not in saved]
    forward_inputs = [x for x in joint.inputs if x not in set(cotangents)]
    forward = Graph(joint.name, forward_inputs, forward_nodes,
                    list(joint.outputs[:forward_count]) + saved)
    backward = Graph(f"{joint.name}_backward", list(cotangents) + saved, backward_nodes,
                     list(grads))
    verify(forward)
    verify(backward)
    return Partition(forward, backward, saved)
