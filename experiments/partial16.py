"""int16 activations on part of a model: an int8 file and a 16x8 file spliced at a cut.

What the ladder's `w8a16_partial` rung would build (it is not a rung: ladder.NOT_IMPLEMENTED says
why). Both files are the converter's own, from the same float graph and the same calibration
ranges (`calibration.py`): the w8a8 file (every op int8) and the w8a16 file (int8 weights, int16
activations). `splice_tail(int8, w16, cut)` keeps the int8 file's ops up to the `cut` tensors,
requantizes each cut tensor from int8 to int16 with a QUANTIZE op (TFLite's int8 -> int16
requantize), and runs every op after the cut as the 16x8 file has it, with its weights, scales and
int16 output. Tensors are matched by name (the converter keeps the float graph's names in both
files, when both come from one import). `tail_cuts` lists the single-tensor cuts from the output
backwards, each tail one op longer; `python -m experiments.tail16_measure` judges them.

The result has zero float ops. XNNPACK delegates the int8 head; the int16 tail runs on the builtin
CPU kernels (LiteRT has no XNNPACK int16 path), and NPUs with 16-bit activations run it whole.
`splice_head(w16, int8, cut)` is the mirror image: int16 from the pixel input up to the cut, a
QUANTIZE int16 -> int8, then the int8 file's ops (a cut through a U-Net names every skip tensor).

Measured (README, "Precision ladder"): neither gets a registry model to its budget. PyDNet++ with
int16 on its last 14 ops: delta1 0.81 / 0.90; the selfie with int16 up to op 4 or 20 improves most
photos but not the ambiguous leopard (IoU 0.27 / 0.74 against 0.88 all-int8).

Not for: searching cuts (tail_cuts lists the tail's; a cut that does not separate the graph is refused),
or float layers (parity/mixed.py).
"""

from __future__ import annotations

import copy

import numpy as np

from toolchain.errors import ExportError
from toolchain.quantize import flatbuffer
from toolchain.quantize.flatbuffer import is_constant

INT8, INT16 = 9, 7  # TensorType
QUANTIZE = 114  # BuiltinOperator.QUANTIZE


def _code(model, op) -> int:
    c = model.operatorCodes[op.opcodeIndex]
    return max(c.builtinCode, c.deprecatedBuiltinCode)


def _names(sg) -> dict[str, int]:
    return {t.name.decode(): i for i, t in enumerate(sg.tensors)}


def _producers(sg) -> dict[int, int]:
    return {o: k for k, op in enumerate(sg.operators) for o in op.outputs if o >= 0}


def _upstream(sg, targets: list[int], stop: set[int]) -> list[int]:
    """Op indices (in graph order) needed to compute `targets`, not looking past `stop` tensors."""
    prod = _producers(sg)
    need, seen = set(), set()
    todo = list(targets)
    while todo:
        t = todo.pop()
        if t in seen or t in stop or t < 0:
            continue
        seen.add(t)
        if t in prod:
            k = prod[t]
            if k not in need:
                need.add(k)
                todo.extend(sg.operators[k].inputs)
    return sorted(need)


def tail_cuts(w16: bytes, limit: int = 12) -> list[list[str]]:
    """Cut candidates from the output backwards: after n = 1, 2, ... ops of the 16x8 file's tail, the
    non-constant inputs of those ops that no tail op produces (the tensors to requantize). Only cuts
    of one tensor (a chain) are listed; the pixel-input path is never cut."""
    m = flatbuffer.read(w16)
    sg = m.subgraphs[0]
    prod = _producers(sg)
    order = _upstream(sg, list(sg.outputs), set())
    cuts: list[list[str]] = []
    for n in range(1, min(limit, len(order)) + 1):
        tail = set(order[-n:])
        made = {o for k in tail for o in sg.operators[k].outputs}
        ins = {
            i
            for k in tail
            for i in sg.operators[k].inputs
            if i >= 0 and i not in made and not is_constant(m, sg.tensors[i])
        }
        if len(ins) != 1:
            continue
        (t,) = ins
        if t in sg.inputs or t not in prod or _code(m, sg.operators[prod[t]]) == QUANTIZE:
            continue
        name = sg.tensors[t].name.decode()
        if [name] not in cuts:
            cuts.append([name])
    return cuts


def _opcode_index(model, code_t) -> int:
    for k, c in enumerate(model.operatorCodes):
        if (max(c.builtinCode, c.deprecatedBuiltinCode), c.customCode, c.version) == (
            max(code_t.builtinCode, code_t.deprecatedBuiltinCode),
            code_t.customCode,
            code_t.version,
        ):
            return k
    model.operatorCodes.append(copy.deepcopy(code_t))
    return len(model.operatorCodes) - 1


def _quantize_code(model):
    schema = flatbuffer.schema()
    c = schema.OperatorCodeT()
    c.builtinCode = QUANTIZE
    c.deprecatedBuiltinCode = QUANTIZE
    c.version = 4  # the version with int8 <-> int16 requantize (both directions load on both kernel sets)
    return _opcode_index(model, c)


def splice_tail(int8: bytes, w16: bytes, cut: list[str]) -> bytes:
    """The int8 file up to the `cut` tensors, then the 16x8 file's ops after them (module docstring)."""
    return splice(int8, w16, cut, INT8, INT16)


def splice_head(w16: bytes, int8: bytes, cut: list[str]) -> bytes:
    """The 16x8 file up to the `cut` tensors (int16 activations from the pixel input on), then the
    int8 file's ops after them."""
    return splice(w16, int8, cut, INT16, INT8)


def splice(first: bytes, second: bytes, cut: list[str], first_type: int, second_type: int) -> bytes:
    """`first`'s ops up to the `cut` tensors, a QUANTIZE of each from `first_type` to `second_type`,
    then `second`'s ops after them; graph inputs from `first`, outputs from `second`."""
    schema = flatbuffer.schema()
    a, b = flatbuffer.read(first), flatbuffer.read(second)
    sa, sb = a.subgraphs[0], b.subgraphs[0]
    if len(a.subgraphs) != 1 or len(b.subgraphs) != 1:
        raise ExportError("int16 splice: only single-subgraph files can be spliced")
    na, nb = _names(sa), _names(sb)
    missing = [c for c in cut if c not in na or c not in nb]
    if missing:
        raise ExportError(f"int16 splice: cut tensor(s) {missing} not in both files")
    cut_a = [na[c] for c in cut]
    cut_b = [nb[c] for c in cut]
    tail = _upstream(sb, list(sb.outputs), set(cut_b))
    made = {o for k in tail for o in sb.operators[k].outputs}
    loose = [
        sb.tensors[i].name.decode()
        for k in tail
        for i in sb.operators[k].inputs
        if i >= 0 and i not in made and i not in cut_b and not is_constant(b, sb.tensors[i])
    ]
    if loose:
        raise ExportError(
            f"int16 splice: the cut {cut} does not separate the graph (it also reads {sorted(set(loose))[:3]})"
        )
    for i in cut_a:
        if sa.tensors[i].type != first_type:
            raise ExportError(
                f"int16 splice: {sa.tensors[i].name.decode()} has type {sa.tensors[i].type} before "
                f"the cut, not {first_type}"
            )
    head = _upstream(sa, cut_a, set())
    out = copy.deepcopy(a)
    so = out.subgraphs[0]
    so.operators = [so.operators[k] for k in head]
    mapping: dict[int, int] = {}

    def add_tensor(t, data=None) -> int:
        t = copy.deepcopy(t)
        if data is not None:
            buf = schema.BufferT()
            buf.data = np.asarray(data, dtype=np.uint8)
            out.buffers.append(buf)
            t.buffer = len(out.buffers) - 1
        else:
            t.buffer = 0
        so.tensors.append(t)
        return len(so.tensors) - 1

    qcode = _quantize_code(out)
    for ia, ib in zip(cut_a, cut_b):
        tb = sb.tensors[ib]
        if tb.type != second_type:
            raise ExportError(f"int16 splice: {tb.name.decode()} has type {tb.type} after the cut, not {second_type}")
        t16 = add_tensor(tb)
        so.tensors[t16].name = (tb.name.decode() + ("_int16" if second_type == INT16 else "_int8")).encode()
        op = schema.OperatorT()
        op.opcodeIndex = qcode
        op.inputs, op.outputs = [ia], [t16]
        so.operators.append(op)
        mapping[ib] = t16
    for k in tail:
        src = sb.operators[k]
        op = copy.deepcopy(src)
        op.opcodeIndex = _opcode_index(out, b.operatorCodes[src.opcodeIndex])
        for field in ("inputs", "outputs", "intermediates"):
            ids = getattr(src, field)
            if ids is None:
                continue
            new = []
            for i in ids:
                if i < 0:
                    new.append(i)
                    continue
                if i not in mapping:
                    t = sb.tensors[i]
                    mapping[i] = add_tensor(t, b.buffers[t.buffer].data if is_constant(b, t) else None)
                new.append(mapping[i])
            setattr(op, field, new)
        so.operators.append(op)
    so.outputs = [mapping[i] for i in sb.outputs]
    for sig in out.signatureDefs or []:
        for k, tm in enumerate(sig.outputs or []):
            tm.tensorIndex = so.outputs[k]
    return flatbuffer.write(_pruned(out))


def _pruned(model):
    """Drop tensors no op or graph io uses (the int8 file's old tail); their buffers become empty."""
    sg = model.subgraphs[0]
    used = set(sg.inputs) | set(sg.outputs)
    for op in sg.operators:
        used |= {i for i in list(op.inputs) + list(op.outputs) + list(op.intermediates or []) if i >= 0}
    keep = sorted(used)
    new_index = {old: k for k, old in enumerate(keep)}
    live_buffers = {sg.tensors[i].buffer for i in keep}
    for i, t in enumerate(sg.tensors):
        if i not in used and t.buffer not in live_buffers and t.buffer > 0:
            model.buffers[t.buffer].data = None
    sg.tensors = [sg.tensors[i] for i in keep]
    remap = lambda ids: [new_index[i] if i >= 0 else i for i in ids]  # noqa: E731
    for op in sg.operators:
        op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
        if op.intermediates is not None:
            op.intermediates = remap(op.intermediates)
    sg.inputs, sg.outputs = remap(sg.inputs), remap(sg.outputs)
    for sig in model.signatureDefs or []:
        for tm in list(sig.inputs or []) + list(sig.outputs or []):
            tm.tensorIndex = new_index[tm.tensorIndex]
    return model
