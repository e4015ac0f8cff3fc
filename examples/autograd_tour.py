"""A tour of autograd, following the steps of PyTorch's autograd tutorials.

Run it with `python examples/autograd_tour.py`; with `import torch` in place of the import
below, PyTorch prints the same numbers in the same format (only the module's name in
`grad_fn` objects' addresses and dtype names differs).
"""

import math

import tracegrad as torch


def section(title: str) -> None:
    print(f"\n=== {title} ===")


section("sin on a linspace, and its derivative")
a = torch.linspace(0.0, 2.0 * math.pi, steps=25, requires_grad=True)
print(a)
b = torch.sin(a)
print(b)
c = 2 * b
print(c)
d = c + 1
print(d)
out = d.sum()
print(out)
print("d:")
print(d.grad_fn.name())


def names(node):
    return [fn.name() if fn is not None else None for fn, _ in node.next_functions]


print(names(d.grad_fn))
print(names(d.grad_fn.next_functions[0][0]))
print("\nc:")
print(c.grad_fn.name())
print("\nb:")
print(b.grad_fn.name())
print("\na:")
print(a.grad_fn)
out.backward()
print(a.grad)
print("2 * cos(a) matches:", bool(torch.allclose(a.grad, 2 * torch.cos(a.detach()))))

section("(x + y) * (x * y) at x = 2, y = 3")
x = torch.tensor(2.0, requires_grad=True)
y = torch.tensor(3.0, requires_grad=True)
q = (x + y) * (x * y)
q.backward()
print(q)
print(x.grad)  # dq/dx = 2xy + y^2 = 21
print(y.grad)  # dq/dy = x^2 + 2xy = 16

section("y = x + 2; z = y * y * 3; out = z.mean()")
x = torch.ones(2, 2, requires_grad=True)
print(x)
y = x + 2
print(y)
print(y.grad_fn)
z = y * y * 3
out = z.mean()
print(z, out)
out.backward()
print(x.grad)

section("requires_grad_ changes a leaf in place")
a = torch.randn(2, 2)
a = ((a * 3) / (a - 1))
print(a.requires_grad)
a.requires_grad_(True)
print(a.requires_grad)
b = (a * a).sum()
print(b.grad_fn)

section("a vector-Jacobian product, in a data-dependent while loop")
x = torch.tensor([0.5, -1.2, 0.3], requires_grad=True)  # fixed, so both libraries agree
y = x * 2
steps = 1
while y.data.norm() < 1000:
    y = y * 2
    steps += 1
print(f"doubled {steps} times: y = x * 2**{steps}")
v = torch.tensor([0.1, 1.0, 0.0001], dtype=torch.float)
y.backward(v)
print(x.grad)
print("equals v * 2**steps:", bool(torch.allclose(x.grad, v * 2.0**steps)))

section("no_grad and detach")
print(x.requires_grad)
print((x ** 2).requires_grad)
with torch.no_grad():
    print((x ** 2).requires_grad)
print(x.requires_grad)
y = x.detach()
print(y.requires_grad)
print(x.eq(y).all())
