#!/usr/bin/env bash
# The recipe's ablation on one GPU host, all variants at once, within one time budget (a GPU is lent for
# minutes, not hours): each variant is `python -m training all` with one setting changed, so each row of the
# "what each step bought" table is measured the same way (held-out test splits through onnxruntime).
# Variants that change only the classifier stage start from the default recipe's pretrained encoder.
#
#   BUDGET=480 bash scripts/ablation-gpu.sh        # results: $OUT/ablation.tgz (run.json, cards, evaluations)
#
# Needs $SITE_TGZ (default .gpucarry/site.tgz): the training data packages unpacked into one site folder (the
# host has no network); torch, onnx, onnxruntime, tokenizers, pyarrow, matplotlib and tqdm come with the host.
# EXTRA adds flags to every variant (a quick local rehearsal: EXTRA="--device cpu --max-samples 400 ...").
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-480}
OUT=${OUT:-/tmp/ablation-out}
R=${RUNS:-/tmp/ablation}
EXTRA=${EXTRA:---device cuda}
START=$(date +%s)
mkdir -p "$OUT" "$R" /tmp/site
tar -C /tmp/site -xzf "${SITE_TGZ:-.gpucarry/site.tgz}" || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1 OMP_NUM_THREADS=2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
python3 -c "import torch, onnxruntime, tokenizers; print('torch', torch.__version__, torch.cuda.is_available(),
'onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers(), 'tokenizers', tokenizers.__version__)"

left() { echo $((START + BUDGET - $(date +%s))); }
# One variant: classifier training stops after the epoch that passes what the budget leaves (less the
# time export and evaluation take), so every variant ends with a verified, evaluated model directory.
variant() {
    local name=$1
    shift
    local limit=$(($(left) - ${MARGIN:-90}))
    echo "$(date +%T) start $name (train for at most ${limit}s): $*"
    timeout $(($(left) + 30)) python3 -m training all --run-dir "$R/$name" --model-dir "$R/$name-model" --name "$name" \
        --version 0 --max-train-seconds "$limit" $EXTRA "$@" > "$R/$name.log" 2>&1
    echo "$(date +%T) end $name: exit $?"
}
wait_for() { while [ ! -f "$1" ] && [ "$(left)" -gt 0 ]; do sleep 2; done; }

variant default &
variant no-vectors --no-vectors &
variant movies-only --sources imdb,rotten_tomatoes &
variant no-pretraining --pretrain-epochs 0 &
variant two-layers --num-layers 2 &
wait_for "$R/default/checkpoints/pretrained.pt"
sleep 5  # the encoder file is written whole before run.json, which follows it
encoder=$R/default/checkpoints/pretrained.pt
variant source-balance --source-balance 0.5 --pretrained-encoder "$encoder" &
variant no-adversarial --adversarial-eps 0 --pretrained-encoder "$encoder" &
wait

python3 - "$R" > "$OUT/ablation.md" <<'EOF'
import json, pathlib, sys
runs = pathlib.Path(sys.argv[1])
cols = ["imdb", "rotten_tomatoes", "tweets", "drug_reviews", "negation", "contrast", "conf. when wrong"]
print("| variant | selection (val) | epochs | " + " | ".join(cols) + " |")
print("|---" * (len(cols) + 3) + "|")
for card_path in sorted(runs.glob("*-model/model_card.json")):
    card = json.loads(card_path.read_text())
    test, t = card["metrics"]["test"], card["training"]
    cells = [f"{test['by_source'][s]['accuracy']:.4f}" if s in test["by_source"] else "-" for s in ("imdb", "rotten_tomatoes", "tweets", "drug_reviews")]
    cells += [f"{test['by_slice'][k]['all']['accuracy']:.4f}" for k in ("negation", "contrast")]
    cells.append(f"{test['mean_confidence_when_wrong']:.3f}")
    print(f"| {card['name']} | {t['best_val_selection']:.4f} | {t['epochs_run']} (best {t['best_epoch']}) | " + " | ".join(cells) + " |")
EOF
cat "$OUT/ablation.md"
tail -n 3 "$R"/*.log
tar -czf "$OUT/ablation.tgz" -C "$R" $(cd "$R" && ls -d */run.json */history.json *-model/model_card.json *-model/README.md *-model/evaluation/evaluation.json *.log 2>/dev/null)
echo "done in $(( $(date +%s) - START ))s"
if python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
    timeout 90 python3 -m bench.ceiling --provider cuda --texts 2048 --repeats 2 --batch-sizes 64,256,1024 \
        --setups 1x1 --output "$OUT/ceiling-cuda.json" 2>&1 | tail -n 12
fi
