#!/usr/bin/env bash
# What each anti-forgetting step of `python -m training adapt` buys, and adapting against training from
# scratch, on a domain the base never saw (docs/adapting.md):
#   base: sentiment-bilstm 2.1.0 (movie reviews only; BASE, e.g. extracted from git history)
#   user: 1,250 tweets of the tweets source's training split (USER_CSV: tweet, sentiment = pos/neg)
#   held out: the tweets source's 1,957 test tweets (HELDOUT_CSV: text, label), none of them in USER_CSV
#
#   BASE=/tmp/adapt/base21 USER_CSV=/tmp/adapt/tweets-1250.csv HELDOUT_CSV=/tmp/adapt/tweets-heldout.csv \
#       OUT=/tmp/adapt/trials bash bench/adapt_trials.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/adapt/trials}
mkdir -p "$OUT"
export TQDM_DISABLE=1
trial() {
    local name=$1
    shift
    local started=$(date +%s)
    $PY -m training adapt --data "$USER_CSV" --text-column tweet --label-column sentiment --from "$BASE" \
        --model-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
    echo "$name $(( $(date +%s) - started ))" >> "$OUT/seconds.txt"
    $PY -m training evaluate --model-dir "$OUT/$name" --data "$HELDOUT_CSV" --output "$OUT/$name-heldout" > /dev/null 2>&1
}
: > "$OUT/seconds.txt"
trial full
trial no-rehearsal --rehearsal 0
trial no-discriminative --lstm-lr-factor 1 --embedding-lr-factor 1 --no-unfreeze
trial nothing --rehearsal 0 --lstm-lr-factor 1 --embedding-lr-factor 1 --no-unfreeze
started=$(date +%s)
$PY -m training all --data "$USER_CSV" --text-column tweet --label-column sentiment --run-dir "$OUT/scratch-run" \
    --model-dir "$OUT/scratch" --name scratch --version 0 > "$OUT/scratch.log" 2>&1
echo "scratch $(( $(date +%s) - started ))" >> "$OUT/seconds.txt"
$PY -m training evaluate --model-dir "$OUT/scratch" --data "$HELDOUT_CSV" --output "$OUT/scratch-heldout" > /dev/null 2>&1
$PY -m training evaluate --model-dir "$BASE" --data "$HELDOUT_CSV" --output "$OUT/base-heldout" > /dev/null 2>&1
$PY - "$OUT" <<'PYEOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
seconds = dict(line.split() for line in (out / "seconds.txt").read_text().splitlines())
base = json.loads((out / "base-heldout" / "evaluation.json").read_text())["overall"]["accuracy"]
print("| trial | seconds | user test: base | user test: adapted | 1,957 held-out tweets | IMDB before → after | RT before → after |")
print("|---|---|---|---|---|---|---|")
for name in ["full", "no-rehearsal", "no-discriminative", "nothing", "scratch"]:
    held = json.loads((out / f"{name}-heldout" / "evaluation.json").read_text())["overall"]["accuracy"]
    card = json.loads((out / name / "model_card.json").read_text())
    a = card.get("adaptation")
    if a:
        u, f = a["user_test"], a["base_sources"]
        cells = [f"{u['base']['accuracy']:.4f}", f"{u['adapted']['accuracy']:.4f}", f"{held:.4f} (base {base:.4f})"]
        cells += [f"{f['before'][s]['accuracy']:.4f} → {f['after'][s]['accuracy']:.4f}" for s in ("imdb", "rotten_tomatoes")]
    else:
        cells = ["-", f"{card['metrics']['test']['accuracy']:.4f}", f"{held:.4f}", "-", "-"]
    print(f"| {name} | {seconds[name]} | " + " | ".join(cells) + " |")
PYEOF
