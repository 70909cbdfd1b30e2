#!/usr/bin/env bash
# usage: ncu_full.sh SHAPE TOKENS CONFIG TAG
export LD_LIBRARY_PATH=$PWD/build:/usr/local/cuda/lib64 SAMOYEDS_CACHE_DIR=/tmp/samoyeds-cache
ncu --set full --clock-control none -k regex:samoyeds_ssmm_wgmma --launch-skip 20 --launch-count 1 -f -o /tmp/rep_$4 \
  build/bench/samoyeds_expert_bench --shapes $1 --tokens $2 --dtype bf16 --config $3 --backend wgmma_sp --csv /tmp/b.csv >/tmp/ncu_$4.log 2>&1
ncu -i /tmp/rep_$4.ncu-rep --page details > $OUT/details_$4.txt 2>&1
ncu -i /tmp/rep_$4.ncu-rep --page raw --csv > $OUT/raw_$4.csv 2>&1
grep -E 'Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Shared|Issue Slots Busy|Registers Per|No Eligible' $OUT/details_$4.txt | head -30
