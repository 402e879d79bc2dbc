#!/bin/sh
# benchmarks/gpu.py from any directory; where $OUT is set (the device machine) the rows also go to $OUT/gpu.json.
cd "$(dirname "$0")/.." && exec python3 benchmarks/gpu.py ${OUT:+--json "$OUT/gpu.json"} "$@"
