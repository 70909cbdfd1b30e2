#!/usr/bin/env bash
# Where one ssmm kernel's warps wait: Nsight Compute with PC sampling, then
# the SASS lines with the most stall samples and the stall reasons overall.
#   bash scripts/ncu_stalls.sh build MODEL TOKENS DTYPE CONFIG [BACKEND]
# NCU_SECTIONS adds sections (e.g. "--section MemoryWorkloadAnalysis_Tables").
set -uo pipefail
BUILD=${1:-build}
BACKEND=${6:-wgmma_sp}
OUTDIR=${OUT:-/tmp}
export LD_LIBRARY_PATH="$(cd "$BUILD" && pwd):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export SAMOYEDS_CACHE_DIR=${SAMOYEDS_CACHE_DIR:-/tmp/samoyeds-cache}
export SAMOYEDS_LINEINFO=${SAMOYEDS_LINEINFO:-1}  # line tables for the source view
rep=/tmp/ncu_stalls_$5
ncu --clock-control none --kernel-name "samoyeds_ssmm_$BACKEND" --launch-skip 20 --launch-count 1 \
  --section WarpStateStats --section SourceCounters --section SpeedOfLight ${NCU_SECTIONS:-} -f -o "$rep" \
  "$BUILD/bench/samoyeds_expert_bench" --model "${2:-mixtral-8x7b}" --tokens "${3:-1024}" --dtype "${4:-bf16}" \
  --config "$5" --backend "$BACKEND" --csv /tmp/ncu_bench.csv >/dev/null 2>&1
ncu -i "$rep.ncu-rep" --page source --csv --print-source sass > "$OUTDIR/ncu_source_$5.csv" 2>&1
ncu -i "$rep.ncu-rep" --page details --print-details all > "$OUTDIR/ncu_details_$5.txt" 2>&1
python3 - "$OUTDIR/ncu_source_$5.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
head = next((i for i, r in enumerate(rows) if any('Warp Stall Sampling (All' in c for c in r)), None)
if head is None:
    print("no stall sampling column"); print(rows[:3]); sys.exit(0)
h = rows[head]
col = next(i for i, c in enumerate(h) if 'Warp Stall Sampling (All' in c)
src = next((i for i, c in enumerate(h) if c.strip() in ('Source', 'Sass')), 1)
data = []
for r in rows[head + 1:]:
    try: data.append((float(r[col] or 0), r[0], r[src]))
    except (ValueError, IndexError): pass
tot = sum(d[0] for d in data) or 1
for v, addr, s in sorted(data, reverse=True)[:30]:
    print(f"{100*v/tot:5.1f}%  {addr}  {s[:110]}")
PY
