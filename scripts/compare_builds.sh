#!/usr/bin/env bash
# Two builds side by side in one device call, for changes that must not move
# speed: the untuned defaults benchmark (wgmma_sp, the six model shapes) and
# run-moe for the three ANCHORS models, builds alternating so that drift
# shows as the spread between repeats of one build. A table comes last.
#   bash scripts/compare_builds.sh OLD_BUILD NEW_BUILD [parts: defaults,moe]
set -uo pipefail
OLD=$(cd "$1" && pwd)
NEW=$(cd "$2" && pwd)
PARTS=${3:-defaults,moe}
# Working files here; the CSVs and logs end up in one archive, $RESULT/compare_<parts>.tgz.
OUT=/tmp/samoyeds-compare
RESULT=${RESULT:-$OUT}
mkdir -p "$OUT/logs"
has() { [[ ",$PARTS," == *",$1,"* ]]; }
run() {  # run SECONDS BUILD_DIR TAG ARGS...: one binary of one build, its own kernel cache
  local limit=$1 build=$2 tag=$3
  shift 3
  timeout "$limit" env LD_LIBRARY_PATH="$build:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}" \
    SAMOYEDS_CACHE_DIR=/tmp/samoyeds-cache-$tag "$@"
}
if has defaults; then
  for rep in 1 2; do
    for tag in old new; do
      build=$OLD; [ $tag = new ] && build=$NEW
      run 200 "$build" $tag "$build/bench/samoyeds_expert_bench" --backend wgmma_sp --config default \
        --dtype "${DTYPE:-bf16}" --tokens 64,256,1024,4096 --csv "$OUT/defaults_${tag}_$rep.csv" \
        >"$OUT/logs/defaults_${tag}_$rep.log" 2>&1
      echo "defaults $tag $rep: rc=$?"
    done
  done
fi
if has moe; then
  for model in mixtral-8x7b openmoe-34b deepseek-moe-16b; do
    for tag in old new; do
      build=$OLD; [ $tag = new ] && build=$NEW
      run 240 "$build" $tag "$build/samoyeds" run-moe --model $model --tokens ${MOE_TOKENS:-8,64,1024,4096} \
        --csv "$OUT/moe_$tag.csv" >"$OUT/logs/moe_${model}_$tag.log" 2>&1
      echo "run-moe $model $tag: rc=$? $(grep -E '^check:' "$OUT/logs/moe_${model}_$tag.log" | cut -d: -f3)"
    done
  done
fi
python3 - "$OUT" <<'EOF'
import csv, glob, os, sys
out = sys.argv[1]
def rows(path):
    return list(csv.DictReader(open(path))) if os.path.exists(path) else []
# Defaults: keyed by shape and tokens (the two builds name models differently).
cells = {}
for path in sorted(glob.glob(f"{out}/defaults_*_*.csv")):
    tag = os.path.basename(path).split("_")[1]
    for r in rows(path):
        key = (int(r["m"]), int(r["k"]), int(r["n"]))
        cells.setdefault(key, {"old": [], "new": [], "cublas": []})
        cells[key][tag].append(float(r["ours_ms"]))
        cells[key]["cublas"].append(float(r["cublas_ms"]))
if cells:
    print(f"{'m x k':>13} {'n':>5} {'old ms (reps)':>20} {'new ms (reps)':>20} {'new/old':>8} {'old spread':>10}")
    for (m, k, n), c in sorted(cells.items()):
        if not c["old"] or not c["new"]:
            continue
        o, w = min(c["old"]), min(c["new"])
        spread = max(c["old"]) / min(c["old"])
        print(f"{m:>6}x{k:<6} {n:>5} {' '.join(f'{v:.4f}' for v in c['old']):>20} "
              f"{' '.join(f'{v:.4f}' for v in c['new']):>20} {sum(c['new'])/sum(c['old']):>8.3f} {spread:>10.3f}")
# run-moe: keyed by model and T.
moe = {}
for tag in ("old", "new"):
    for r in rows(f"{out}/moe_{tag}.csv"):
        moe.setdefault((r["model"], int(r["tokens"])), {})[tag] = (float(r["samoyeds_ms"]), float(r["best_dense_ms"]))
if moe:
    print(f"\n{'model':<18} {'T':>5} {'old ms':>9} {'new ms':>9} {'new/old':>8} {'dense old':>10} {'dense new':>10}")
    for (model, t), v in sorted(moe.items()):
        if "old" in v and "new" in v:
            print(f"{model:<18} {t:>5} {v['old'][0]:>9.4f} {v['new'][0]:>9.4f} {v['new'][0]/v['old'][0]:>8.3f} "
                  f"{v['old'][1]:>10.4f} {v['new'][1]:>10.4f}")
EOF
mkdir -p "$RESULT"
tar czf "$RESULT/compare_${PARTS//,/_}.tgz" -C "$OUT" .
