#!/bin/sh
# run_fuzz.sh FUZZER WORK_CORPUS SEED_CORPUS [libFuzzer flags...]
# A bounded libFuzzer run for ctest: 5000 inputs or 5 s, whichever first.
set -eu
fuzzer=$1 work=$2 seeds=$3
shift 3
mkdir -p "$work"
exec "$fuzzer" -runs=5000 -max_total_time=5 -max_len=65536 -rss_limit_mb=2048 \
  -print_final_stats=1 "$@" "$work" "$seeds"
