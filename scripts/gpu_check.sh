#!/usr/bin/env bash
# One device call: GPU tests, compute-sanitizer, SASS of the shipped kernels,
# benchmarks; a short summary last. Build here with scripts/build_for_gpu.sh,
# carry build/, then on the GPU machine:  bash scripts/gpu_check.sh [build] [parts]
# parts: any of tests,every,every_scale,sanitize,bench,defaults,ingress,sass,moe,tune,python,peers,model,fp8 (default all but
# model, which needs a GPU of more than 93 GB at its default size, and fp8, experimental). A device call
# lasts at most 600 s: name a few parts per call (tests alone takes about 240 s, every and every_scale each most of a call).
set -uo pipefail
BUILD=${1:-build}
PARTS=${2:-tests,every,every_scale,sanitize,bench,defaults,ingress,sass,moe,tune,python,peers}
OUT=${OUT:-/tmp/samoyeds-out}
# The device tool returns at most 8 files: CSVs go to $OUT, logs to $OUT/logs,
# bundled into $OUT/logs.tgz at the end.
LOGS=$OUT/logs
mkdir -p "$LOGS"
export LD_LIBRARY_PATH="$(cd "$BUILD" && pwd):/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export SAMOYEDS_CACHE_DIR=${SAMOYEDS_CACHE_DIR:-/tmp/samoyeds-cache}
# cuSPARSELt ships inside the PyTorch environment there.
if [ -z "${SAMOYEDS_CUSPARSELT_LIB:-}" ]; then
  lt=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null)
  lt=$(find "${lt:-/nonexistent}" -name 'libcusparseLt.so*' 2>/dev/null | head -1)
  [ -n "$lt" ] && export SAMOYEDS_CUSPARSELT_LIB=$lt
fi
summary=()
has() { [[ ",$PARTS," == *",$1,"* ]]; }
gtest_line() { grep -E '^\[  (PASSED|FAILED) ' "$1" | head -2 | tr '\n' ' '; }

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | tee "$LOGS/gpu.txt"
# Binaries for the SASS check: this run's only (a warm machine keeps /tmp).
rm -rf /tmp/samoyeds-cubins

if has tests; then
  # A hang must not eat the whole call's device time: every part has a time limit.
  # All but the every-config tests (the part `every`): about 240 s on an H100.
  timeout "${TEST_TIMEOUT:-420}" "$BUILD/tests/samoyeds_gpu_tests" --gtest_filter="${GTEST_FILTER:--*EveryValid*}" \
    >"$LOGS/gpu_tests.log" 2>&1
  rc=$?
  grep -E '^\[  FAILED|Failure|error' "$LOGS/gpu_tests.log" | head -40
  summary+=("gpu tests: rc=$rc $(gtest_line "$LOGS/gpu_tests.log")")
fi

# Every valid config of both families on small shapes and on one with more
# tiles than SMs, several row groups and 8+ experts: minutes on their own.
# The every-config sweeps outlast one device call together (on an H100, 2026-12-08: the two at scale 250 s
# and more, the 15 small ones more than 560 s): two parts, each its own call.
every_part() {  # name filter log
  timeout "${EVERY_TIMEOUT:-560}" "$BUILD/tests/samoyeds_gpu_tests" --gtest_filter="$2" >"$LOGS/$3" 2>&1
  local rc=$?
  grep -E '^\[  FAILED|Failure|exception' "$LOGS/$3" | head -20
  summary+=("$1: rc=$rc $(gtest_line "$LOGS/$3") last: $(grep -E '^\[ +(OK|FAILED) ' "$LOGS/$3" | tail -1)")
}
has every && every_part "every-config tests" '*EveryValid*:-*MoreTilesThanSms' every_tests.log
has every_scale && every_part "every-config tests at scale" '*EveryValidConfigGroupedWithMoreTilesThanSms' \
  every_scale_tests.log

if has sanitize; then
  for tool in memcheck racecheck; do
    timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 "$BUILD/tests/samoyeds_gpu_tests" \
      --gtest_filter='ExpertOpsGpu.SanitizerSmallCases:WgmmaSpGpu.Sanitizer*:WgmmaSpGpu.TmaStoredTiles*:WgmmaSpGpu.TokenTilesByTmaNeedRowsInOrder:MoeLayerGpu.EveryTokenToOneExpert*:MoeLayerGpu.GpuRouting*:MoeLayerGpu.OutOfRange*:MoeRoutingGpu.*' \
      >"$LOGS/sanitize_$tool.log" 2>&1
    rc=$?
    summary+=("compute-sanitizer $tool: rc=$rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGS/sanitize_$tool.log" | tail -1)")
  done
fi

# SASS of what ships (a model's default kernels) and of what the benchmark
# picks (its winners, dumped by the bench run, so run sass after bench).
if has bench; then
  timeout "${BENCH_TIMEOUT:-300}" "$BUILD/bench/samoyeds_expert_bench" --csv "$OUT/expert_bench.csv" --dump-cubins /tmp/samoyeds-cubins \
    --configs-csv "$LOGS/expert_bench_configs.csv" \
    ${BENCH_ARGS:-} >"$LOGS/bench.log" 2>&1
  rc=$?
  tail -60 "$LOGS/bench.log"
  summary+=("bench: rc=$rc, $(($(grep -c . "$OUT/expert_bench.csv") - 1)) rows; $(grep 'warm dispatch' "$LOGS/bench.log")")
fi

# What a user gets without tuning: at each token count the untuned default of
# the backend dispatch picks on this GPU (wgmma_sp on sm_90, else mma_sp),
# re-timed like the bench's best, f16 and bf16, x cuBLAS in the same run.
if has defaults; then
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)
  backend=mma_sp; [ "$cc" = "9.0" ] && backend=wgmma_sp
  for dt in bf16 f16; do
    timeout 150 "$BUILD/bench/samoyeds_expert_bench" --backend $backend --config default --dtype $dt \
      --tokens 64,256,1024,4096 --csv "$OUT/defaults_$dt.csv" >"$LOGS/defaults_$dt.log" 2>&1
    rc=$?
    tail -25 "$LOGS/defaults_$dt.log"
    range() {  # min-max of x_cublas (column 12) over rows whose n (column 4) passes the test
      awk -F, -v t="$1" 'NR > 1 && ((t == "large" && $4 >= 1024 && $2 >= 8192) || (t == "64" && $4 == 64)) {
        x = $12 + 0; if (lo == "" || x < lo) lo = x; if (x > hi) hi = x } END { printf "%.2f-%.2fx", lo, hi }' \
        "$OUT/defaults_$dt.csv"
    }
    summary+=("defaults $backend $dt: rc=$rc, x cuBLAS at n >= 1024 (m >= 8192) $(range large), at n = 64 $(range 64)")
  done
fi

# The ceiling the projections' delivery is compared with (docs/perf-log.md):
# TMA into each SM with nothing else running, 64 KB stages, one SM per
# region against four neighbouring SMs reading the same lines.
if has ingress; then
  timeout 120 "$BUILD/bench/samoyeds_ingress_bench" --csv "$OUT/ingress_bench.csv" >"$LOGS/ingress.log" 2>&1
  rc=$?
  rate() { awk -F, -v src="$1" '$1 == 3 && $2 == 4 && $4 == 1 && $6 == src { print $7 }' "$OUT/ingress_bench.csv"; }
  summary+=("ingress: rc=$rc, TMA into each SM $(rate own-192K) B/cycle from its own L2 lines, $(rate fours-192K) where four neighbours read the same ones")
fi

if has sass; then
  "$BUILD/samoyeds" compile --model mixtral-8x7b --arch sm_90a --emit-cubins /tmp/samoyeds-cubins >"$LOGS/sass_compile.log" 2>&1
  total=0; with_sp=0; with_local=0; with_hgmma=0; with_qgmma=0; fixed=0
  for f in /tmp/samoyeds-cubins/*.cubin; do
    sass=$(cuobjdump --dump-sass "$f")
    if grep -qE '\b(LDL|STL)(\.|\s)' <<<"$sass"; then with_local=$((with_local + 1)); echo "local memory: $f"; fi
    # The routing, list, gather and combine kernels have no MMA: spills only.
    if [[ "$(basename "$f")" == fixed_samoyeds_* ]]; then fixed=$((fixed + 1)); continue; fi
    total=$((total + 1))
    # mma_sp kernels must show HMMA.SP, wgmma_sp ones HGMMA.SP, the FP8 ones QGMMA.SP.
    if [[ "$f" == *fp8* ]]; then
      grep -q 'QGMMA\.SP' <<<"$sass" && { with_sp=$((with_sp + 1)); with_qgmma=$((with_qgmma + 1)); }
    elif [[ "$f" == *wgmma_sp* ]]; then
      grep -q 'HGMMA\.SP' <<<"$sass" && { with_sp=$((with_sp + 1)); with_hgmma=$((with_hgmma + 1)); }
    else
      grep -q 'HMMA\.SP' <<<"$sass" && with_sp=$((with_sp + 1))
    fi
  done
  first=$(ls /tmp/samoyeds-cubins/*fp8*.cubin 2>/dev/null | head -1)
  : > "$LOGS/sass_sample.txt"
  [ -n "$first" ] && cuobjdump --dump-sass "$first" | grep -m3 -E 'QGMMA\.SP' > "$LOGS/sass_sample.txt"
  summary+=("sass: $with_sp of $total kernels (shipped defaults incl. FP8 + benchmark winners) have their sparse MMA ($with_hgmma wgmma_sp with HGMMA.SP, $with_qgmma FP8 with QGMMA.SP), $with_local of all $((total + fixed)) (with $fixed fixed kernels) use local memory; e.g. $(head -1 "$LOGS/sass_sample.txt" | sed 's/  */ /g')")
fi
# The whole MoE layer against dense cuBLAS on the same routing (ANCHORS.md peers).
if has moe; then
  # One process per model: the layer is built once, then run for every T.
  for model in ${MOE_MODELS:-mixtral-8x7b openmoe-34b deepseek-moe-16b}; do
    timeout ${MOE_TIMEOUT:-300} "$BUILD/samoyeds" run-moe --model "$model" --tokens ${MOE_TOKENS:-8,64,256,1024,4096} --csv "$OUT/moe.csv" \
      >"$LOGS/moe_$model.log" 2>&1
    rc=$?
    cat "$LOGS/moe_$model.log"
    summary+=("run-moe $model: rc=$rc, $(grep -E '^check:' "$LOGS/moe_$model.log" | cut -d: -f3)")
  done
  # The same table as a figure (docs/figures/ keeps the ones the log cites).
  python3 bench/plot_moe.py "$OUT/moe.csv" --out "$OUT/moe.png" --title "$(head -1 "$LOGS/gpu.txt")" \
    >"$LOGS/moe_table.md" 2>&1 || echo "no plot: $(tail -1 "$LOGS/moe_table.md")"
fi

# Tuning end to end: every projection of a model with shared experts, then
# its layer with those records against the heuristic (into a cache of its
# own, so the moe part above stays untuned).
if has tune; then
  tuned_cache=/tmp/samoyeds-tuned-cache
  rm -rf "$tuned_cache"
  # Through --gpus all: a worker per GPU of this machine (world size 1 on one GPU).
  SAMOYEDS_CACHE_DIR=$tuned_cache timeout 300 "$BUILD/samoyeds" tune --model deepseek-moe-16b --gpus all \
    --buckets ${TUNE_BUCKETS:-8,256} >"$LOGS/tune.log" 2>&1
  rc=$?
  grep -vE ' (compile|verify|time) [0-9]+/' "$LOGS/tune.log" | tail -20
  summary+=("tune deepseek-moe-16b --gpus all: rc=$rc, $(grep -c 'candidates, ' "$LOGS/tune.log") kernels tuned, $(grep -E 'candidates, ' "$LOGS/tune.log" | grep -vc ' 0 failed to compile, 0 wrong') with failures; $(grep -E 'workers succeeded' "$LOGS/tune.log")")
  SAMOYEDS_CACHE_DIR=$tuned_cache timeout 120 "$BUILD/samoyeds" run-moe --model deepseek-moe-16b \
    --tokens ${TUNE_BUCKETS:-8,256} >"$LOGS/moe_tuned.log" 2>&1
  rc=$?
  cat "$LOGS/moe_tuned.log"
  summary+=("run-moe deepseek-moe-16b tuned: rc=$rc, $(grep -E '^check:' "$LOGS/moe_tuned.log" | cut -d: -f3)")
fi

# The Python package as a user installs it (the wheel build_for_gpu.sh made),
# its tests (torch, transformers and the GPU there), then its benchmark.
if has python; then
  site=/tmp/samoyeds-site
  rm -rf "$site"
  python3 -m pip install --quiet --no-deps --no-index --target "$site" "$BUILD"/wheelhouse/*.whl >"$LOGS/pip.log" 2>&1 \
    || python3 -m zipfile -e "$BUILD"/wheelhouse/*.whl "$site" >>"$LOGS/pip.log" 2>&1
  # The expert-parallel tests start up to 8 processes each: the suite needs most of a call.
  PYTHONPATH="$site:$BUILD/py" SAMOYEDS_TEST_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 timeout 420 \
    python3 -m pytest -q -rs -p no:cacheprovider python/tests >"$LOGS/pytest.log" 2>&1
  rc=$?
  grep -E 'FAILED|Error' "$LOGS/pytest.log" | head -20
  summary+=("python tests: rc=$rc, $(tail -1 "$LOGS/pytest.log")")
  for example in custom_module sparsify_and_generate; do
    PYTHONPATH="$site" timeout 180 python3 "examples/python/$example.py" >"$LOGS/example_$example.log" 2>&1
    summary+=("example $example: rc=$? $(tail -1 "$LOGS/example_$example.log")")
  done
  PYTHONPATH="$site" timeout 300 python3 bench/torch_moe_bench.py --csv "$OUT/torch_bench.csv" \
    >"$LOGS/torch_bench.log" 2>&1
  rc=$?
  grep -v warning "$LOGS/torch_bench.log" | tail -12
  summary+=("torch bench: rc=$rc, $(grep 'torch_op above' "$LOGS/torch_bench.log")")
  # Expert parallelism over every GPU here (world size 1 on one): each rank against the one-GPU layer.
  gpus=$(nvidia-smi -L | wc -l)
  PYTHONPATH="$site:$(pwd)/bench" NCCL_NVLS_ENABLE=0 timeout 300 python3 -m torch.distributed.run \
    --nproc-per-node "$gpus" bench/ep_bench.py --model mixtral --csv "$OUT/ep_bench.csv" >"$LOGS/ep_bench.log" 2>&1
  rc=$?
  grep -E "^\{" "$LOGS/ep_bench.log"
  summary+=("ep bench ($gpus GPUs): rc=$rc, $(grep -c "^{" "$LOGS/ep_bench.log") rows")
fi

# The layer against its dense peers in one process: ours, torch._grouped_mm and cuBLAS side by side on the
# same weights and routing (the package from the source tree over this build's library, which the cuBLAS
# peer's bench library links too).
here_py() { SAMOYEDS_LIBRARY="$BUILD/libsamoyeds.so" SAMOYEDS_BENCH_PEERS="$BUILD/bench/libsamoyeds_bench_peers.so" PYTHONPATH="$(pwd)/python:${PYTHONPATH:-}" PYTHONDONTWRITEBYTECODE=1 "$@"; }
if has peers; then
  here_py timeout "${PEERS_TIMEOUT:-420}" python3 bench/moe_peers.py --models "${PEERS_MODELS:-qwen3-30b-a3b,deepseek-v3}" \
    --tokens "${PEERS_TOKENS:-1,8,64,256,1024,4096,8192}" --csv "$OUT/moe_peers.csv" >"$LOGS/moe_peers.log" 2>&1
  rc=$?
  grep -vi warning "$LOGS/moe_peers.log" | tail -20
  summary+=("moe peers: rc=$rc, $(grep -c 'x_best_dense=' "$LOGS/moe_peers.log") rows, x best dense $(grep -o 'x_best_dense=[0-9.]*' "$LOGS/moe_peers.log" | cut -d= -f2 | sort -n | sed -n '1p;$p' | paste -sd- -)")
fi

# A whole transformers model, dense against sparsified (bench/model_bench.py; MODEL_ARGS: --layers N on a
# smaller GPU).
if has model; then
  here_py timeout "${MODEL_TIMEOUT:-420}" python3 bench/model_bench.py ${MODEL_ARGS:-} --csv "$OUT/model_bench.csv" \
    >"$LOGS/model_bench.log" 2>&1
  rc=$?
  grep -vi warning "$LOGS/model_bench.log" | tail -8
  summary+=("model bench: rc=$rc, $(tail -1 "$LOGS/model_bench.log")")
fi

# FP8 (docs/fp8.md): its GPU tests (the MMA probe, projections single and grouped, token quantization,
# the layer), then the projection and the layer against bf16 on the same weights (bench/fp8_bench.cpp).
if has fp8; then
  timeout "${FP8_TEST_TIMEOUT:-120}" "$BUILD/tests/samoyeds_gpu_tests" --gtest_filter='WgmmaSpFp8Gpu.*:Fp8TokensGpu.*:Fp8MoeLayerGpu.*' \
    >"$LOGS/fp8_tests.log" 2>&1
  rc=$?
  grep -E '^\[  FAILED|Failure|exception|FP8 layer' "$LOGS/fp8_tests.log" | head -20
  summary+=("fp8 tests: rc=$rc $(gtest_line "$LOGS/fp8_tests.log")")
  timeout "${FP8_BENCH_TIMEOUT:-300}" "$BUILD/bench/samoyeds_fp8_bench" ${FP8_BENCH_ARGS:-} --csv "$OUT/fp8_bench.csv" \
    >"$LOGS/fp8_bench.log" 2>&1
  rc=$?
  tail -40 "$LOGS/fp8_bench.log"
  summary+=("fp8 bench: rc=$rc, $(($(grep -c . "$OUT/fp8_bench.csv") - 1)) rows")
fi

tar czf "$OUT/logs.tgz" -C "$OUT" logs && rm -rf "$LOGS"
echo "===== summary ====="
printf '%s\n' "${summary[@]}"
