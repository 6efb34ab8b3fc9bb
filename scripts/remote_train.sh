#!/usr/bin/env bash
# Train several clearface runs side by side on one GPU, on data packed by scripts/remote_data.py (training and
# validation images only), and collect their model files. Run from the repository root of the GPU machine:
#
#   DEADLINE=480 OUT=/results bash scripts/remote_train.sh PACKED_DIR... -- LANE...
#
# A LANE is a ';'-separated list of NAME:RECIPE:clearface-train-options run one after another; lanes run in
# parallel (small models leave an H100 mostly idle, so a few processes share it). Each run starts as
# `clearface train --resume` in a folder holding only the RECIPE (as config.yaml) and split.csv, the split
# of the run that was packed, so the parts are the same image by image. A run still going DEADLINE seconds
# after the start is stopped and left out. ImageNet MobileNetV2 weights come from PACKED_DIR/w via torch's
# hub cache. Environment: WORK (scratch folder), ACCEL (default gpu; cpu to try the script without one),
# THREADS (CPU threads per run, default 3).
set -u
t0=$(date +%s)
dirs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do dirs+=("$1"); shift; done
shift
work=${WORK:-/root/clearface_remote}
export PYTHONPATH=$PWD/src TORCH_HOME=$work/torch PYTHONUNBUFFERED=1
mkdir -p "$TORCH_HOME/hub/checkpoints" "$work/runs" "$work/cache"
for d in "${dirs[@]}"; do [ -d "$d/w" ] && cp "$d"/w/*.pth "$TORCH_HOME/hub/checkpoints/"; done
split=$(ls "${dirs[@]/%//split.csv.gz}" 2>/dev/null | head -1)
labels=$(ls "${dirs[@]/%//labels.txt}" 2>/dev/null | head -1)
python3 scripts/remote_data.py unpack --src "${dirs[@]}" --out "$work/data.zip" || exit 3
python3 -c "from clearface.data import load_labelled as f; f('$work/data.zip', '$labels', cache_dir='$work/cache')" \
  || exit 3  # one cache for every lane, built before they start
echo "data ready after $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true

run_lane() {
  IFS=';' read -ra specs <<< "$1"
  for spec in "${specs[@]}"; do
    name=${spec%%:*}; rest=${spec#*:}; recipe=${rest%%:*}; opts=${rest#*:}
    left=$(( t0 + DEADLINE - $(date +%s) ))
    [ "$left" -gt 45 ] || { echo "$name: not started, ${left}s left"; break; }
    mkdir -p "$work/runs/$name"
    gunzip -c "$split" > "$work/runs/$name/split.csv"
    cp "$recipe" "$work/runs/$name/config.yaml"
    # shellcheck disable=SC2086  # opts holds several options
    timeout "$left" python3 -c "import sys; from clearface.cli import main; sys.exit(main())" train \
      --data "$work/data.zip" --labels "$labels" --out "$work/runs/$name" --resume --cache-dir "$work/cache" \
      --accelerator "${ACCEL:-gpu}" --num-threads "${THREADS:-3}" --progress-bar false $opts \
      > "$work/runs/$name.out" 2>&1
    echo "$name: exit $? after $(( $(date +%s) - t0 )) s"
  done
}
for lane in "$@"; do run_lane "$lane" & done
wait
python3 scripts/remote_data.py collect --runs "$work/runs" --out "$OUT"
echo "done after $(( $(date +%s) - t0 )) s"
