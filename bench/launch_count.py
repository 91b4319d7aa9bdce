"""Operator launches per Mona: leaf ``aten::`` profiler events of one forward + backward (issue 13).

On a GPU each leaf aten op is (at least) one kernel launch, and a host-bound step is paid per launch,
so this count tracks what issue 13 must cut, and it can be measured on any machine: one Mona in
train mode at (B, H, W, C) = (8, 56, 56, 128) (Swin-B stage 1), fp32, on the CPU. Forms: "public"
(the literal form with torch's nn.Dropout, as the public code), "plain" (literal form, monatune's
dropout), "fast" (the CPU's custom autograd function), "lean" (the GPU path, forced on the CPU with
its GPU dropout draw, torch's ``bernoulli_``) and "compiled" (lean through inductor, which fuses the
elementwise work into generated kernels: each generated kernel counts as one leaf too). A leaf event is
an ``aten::`` event with no ``aten::`` event inside it (the issue's figure); "computing" leaves leave out
those that only allocate or view memory (``NO_KERNEL``). Gradients are set to None before the counted step, as an optimizer's
``zero_grad`` does (no accumulation into old gradients).

The script runs on older checkouts too (forms they lack are skipped), so "today" can be re-measured:
``git archive <commit> src | tar -x -C /tmp/old && PYTHONPATH=/tmp/old/src python bench/launch_count.py``.

    OMP_WAIT_POLICY=PASSIVE python bench/launch_count.py --out bench/results/launch-count.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch._dynamo  # noqa: E402
import torch._inductor.config  # noqa: E402

from harness import finish, machine, public_form  # noqa: E402

SHAPE = (8, 56, 56, 128)
# Leaf ops that only allocate or re-describe memory: no kernel on a GPU. "compute" = every other leaf op.
NO_KERNEL = {
    "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::resize_", "aten::view", "aten::_unsafe_view",
    "aten::as_strided", "aten::reshape", "aten::expand", "aten::permute", "aten::t", "aten::transpose",
    "aten::unsqueeze", "aten::squeeze", "aten::detach", "aten::alias", "aten::lift_fresh", "aten::slice",
    "aten::select", "aten::_reshape_alias", "aten::unflatten", "aten::flatten", "aten::split", "aten::chunk",
    "aten::narrow", "aten::view_as", "aten::set_", "aten::resolve_conj", "aten::resolve_neg",
    "aten::to",  # a leaf aten::to made no copy (a copy shows aten::_to_copy inside it)
}  # fmt: skip


def leaf_aten_events(step) -> tuple[collections.Counter, collections.Counter]:
    """(leaf ``aten::`` events, those of them that compute) that ``step()`` records, forward and backward.

    A leaf has no ``aten::`` event inside it; a computing leaf is one outside ``NO_KERNEL``. On a CPU
    part of the arithmetic runs inside non-leaf ops without an event of its own (the BLAS gemm of
    ``aten::addmm`` after its ``copy_`` of the bias; oneDNN convolutions), so both counts are proxies
    for GPU launches: the issue's figure is the first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    leaves = collections.Counter(
        e.name for e in prof.events() if e.name.startswith("aten::") and not any(c.name.startswith("aten::") for c in e.cpu_children)
    )
    leaves.update("inductor kernel" for e in prof.events() if "_fused_" in e.name)  # generated (fused) kernels
    return leaves, collections.Counter({op: n for op, n in leaves.items() if op not in NO_KERNEL})


def forms(dim: int, compiled: bool = True) -> dict[str, torch.nn.Module]:
    from monatune.layers import mona

    torch.manual_seed(0)
    base = mona.Mona(dim).train()
    out = {"public": public_form(copy.deepcopy(base))}
    for form in ("plain", "fast", "lean", "compiled")[: None if compiled else 3]:
        if form in getattr(mona, "FORMS", ("fast", "plain")):
            out[form] = copy.deepcopy(base)
            out[form].form = form
    return out


@contextlib.contextmanager
def gpu_dropout_draw():
    """The lean form's dropout draws as on a GPU (torch's ``bernoulli_``), forced on the CPU."""
    try:
        from monatune.layers import dropout, mona_lean
    except ImportError:  # a checkout without the lean form
        yield
        return
    original = mona_lean.keep_mask
    mona_lean.keep_mask = functools.partial(dropout.keep_mask, native=True)
    try:
        yield
    finally:
        mona_lean.keep_mask = original


def count_form(module: torch.nn.Module, shape: tuple[int, ...] = SHAPE) -> tuple[collections.Counter, collections.Counter]:
    x = torch.randn(*shape, requires_grad=True)
    grad = torch.randn(*shape)

    def step() -> None:
        for t in (x, *module.parameters()):
            t.grad = None  # as an optimizer's zero_grad(set_to_none=True): no accumulation into old grads
        module(x).backward(grad)

    form = getattr(module, "form", None)
    with contextlib.ExitStack() as stack:
        if form in ("lean", "compiled"):
            stack.enter_context(gpu_dropout_draw())
        if form == "compiled":  # compile afresh, with a profiler event per generated CPU kernel
            stack.enter_context(torch._inductor.config.patch({"cpp.enable_kernel_profile": True}))
            torch._dynamo.reset()
        step()  # warm-up (and compiling): first-call set-up is not part of a step
        return leaf_aten_events(step)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--shape", type=int, nargs=4, default=list(SHAPE), metavar=("B", "H", "W", "C"))
    parser.add_argument("--no-compiled", action="store_true", help="skip the compiled form (it compiles ~10 s)")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    results = {"machine": machine(), "shape": list(shape), "dtype": "float32", "device": "cpu", "forms": {}}
    rows = ["| form | leaf aten ops (fwd+bwd) | of which compute | most frequent computing leaves |", "|---|---|---|---|"]
    for name, module in forms(shape[-1], compiled=not args.no_compiled).items():
        counts, compute = count_form(module, shape)
        total, launches = sum(counts.values()), sum(compute.values())
        results["forms"][name] = {
            "leaf_aten_ops": total, "computing_leaves": launches, "leaves_by_op": dict(counts.most_common()),
            "computing_by_op": dict(compute.most_common()),
        }  # fmt: skip
        top = ", ".join(f"{op.removeprefix('aten::')} {n}" for op, n in compute.most_common(5))
        rows.append(f"| {name} | {total} | {launches} | {top} |")
    return finish(results, args.out, "\n".join(rows))


if __name__ == "__main__":
    main()
