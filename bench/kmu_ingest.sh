#!/usr/bin/env bash
# Ingest the KMU application log with the shipped column maps, for `bench/ranking.py --kmu DIR`.
# usage: bench/kmu_ingest.sh [KMU_DIR (default ../shared/data/real/kmu)] [OUT_DIR (default /tmp/kmu)]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
src="${1:-$here/../shared/data/real/kmu}"
out="${2:-/tmp/kmu}"
jobrec="${JOBREC:-$here/.venv/bin/jobrec}"
maps="$here/core/ingest/maps"
mkdir -p "$out"
"$jobrec" ingest --kind seekers "$src/resume.csv" --format csv \
  --column-map "$maps/kmu_resumes.json" --out "$out/ks.parquet"
"$jobrec" ingest "$src/recruitment.csv" --format csv \
  --column-map "$maps/kmu_postings.json" --out "$out/kp.parquet"
"$jobrec" ingest --kind interactions "$src/apply_train.csv" --format csv \
  --column-map "$maps/kmu_applications.json" \
  --seekers "$out/ks.parquet" --postings "$out/kp.parquet" --out "$out/ki.parquet"
