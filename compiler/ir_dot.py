"""The IR as a Graphviz DOT drawing: `tracegrad ir --format dot|svg`.

Inputs are ellipses, nodes boxes labelled with their op and output type, edges follow the
data, and the graph's outputs flow into one `return` box. `clusters` (name -> nodes)
draws groups, such as the fused kernels of the scheduled stage, as labelled frames.
Scalar inputs are left out of the drawing; the text form has them.
"""

from __future__ import annotations

from .ir import Graph, Node, Value, format_type


def graph_to_dot(graph: Graph, clusters: dict[str, list[Node]] | None = None) -> str:
    """DOT text for `graph`, with `clusters` drawn as labelled subgraphs.

    >>> from tracegrad.compiler.ir import GraphBuilder
    >>> from tracegrad.compiler.ops import float32
    >>> b = GraphBuilder("f"); b.set_outputs([b.add_node("neg", [b.add_input((3,), float32)])])
    >>> print(graph_to_dot(b.build()), end="")
    digraph "f" {
      node [shape=box, fontname="monospace", fontsize=10];
      edge [fontname="monospace", fontsize=9];
      "x0" [label="x0\\nf32[3]", shape=ellipse];
      "v0" [label="neg\\nf32[3]", tooltip="v0"];
      "x0" -> "v0";
      "return" [shape=plaintext];
      "v0" -> "return";
    }
    """
    lines = [f"digraph {_quote(graph.name)} {{",
             '  node [shape=box, fontname="monospace", fontsize=10];',
             '  edge [fontname="monospace", fontsize=9];']
    for value in graph.inputs:
        label = f"{value.name}\n{format_type(value.shape, value.dtype)}"
        lines.append(f"  {_quote(value.name)} [label={_quote(label)}, shape=ellipse];")
    clustered = {id(node) for nodes in (clusters or {}).values() for node in nodes}
    lines += [_node_line(node, "  ") for node in graph.nodes if id(node) not in clustered]
    for k, (name, nodes) in enumerate((clusters or {}).items()):
        lines += [f"  subgraph cluster_{k} {{", f"    label={_quote(name)};",
                  "    style=rounded; color=gray50;"]
        lines += [_node_line(node, "    ") for node in nodes]
        lines.append("  }")
    for node in graph.nodes:
        for x in node.inputs:
            if isinstance(x, Value):
                lines.append(f"  {_quote(x.name)} -> {_quote(node.out.name)};")
    # "return" is a Python keyword, so no value can take that name.
    lines.append('  "return" [shape=plaintext];')
    lines += [f'  {_quote(v.name)} -> "return";' for v in graph.outputs]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_line(node: Node, indent: str) -> str:
    label = f"{node.op}\n{format_type(node.out.shape, node.out.dtype)}"
    tooltip = node.out.name + (f" at {node.loc}" if node.loc else "")
    style = ", style=dashed" if node.op == "constant" else ""
    return (f"{indent}{_quote(node.out.name)} [label={_quote(label)}, "
            f"tooltip={_quote(tooltip)}{style}];")


def _quote(text: str) -> str:
    """A DOT string: backslashes and quotes escaped, newlines as DOT's `\\n`."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
