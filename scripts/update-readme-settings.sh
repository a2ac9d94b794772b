#!/usr/bin/env bash
# Rewrites the README's settings table (between the settings:begin and
# settings:end markers) from `memward-settings --markdown`.
# Usage: scripts/update-readme-settings.sh [BUILD_DIR]   (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tool="${1:-$root/build}/bin/memward-settings"
[[ -x $tool ]] || { echo "error: $tool not found; build the memward-settings target first" >&2; exit 1; }
table=$(mktemp)
trap 'rm -f "$table"' EXIT
"$tool" --markdown > "$table"
/usr/bin/python3 - "$root/README.md" "$table" <<'PY'
import sys
readme, table = sys.argv[1], open(sys.argv[2]).read()
text = open(readme).read()
begin, end = "<!-- settings:begin -->\n", "<!-- settings:end -->"
start, stop = text.index(begin) + len(begin), text.index(end)
open(readme, "w").write(text[:start] + table + text[stop:])
PY
