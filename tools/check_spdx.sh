#!/bin/sh
# SPDX-License-Identifier: MIT
# Copyright (c) 2026 the deepseek.h authors
#
# check_spdx.sh — every source file of ours starts with the licence lines
#
#     SPDX-License-Identifier: MIT
#     Copyright (c) 2026 the deepseek.h authors
#
# as comments (after the #! line of a script), so that a file copied out of
# the tree, deepseek.h above all, still says whose it is and under what
# licence. The licence is LICENSE's; the holder is LICENSE's copyright line.
#
#   sh tools/check_spdx.sh         lists the files without them; exit 1 if any
#   sh tools/check_spdx.sh --fix   adds them to those files
#
# Sources: the tracked files (git ls-files; find outside a git checkout)
# named *.c *.h *.cu *.cuh *.cpp *.py *.sh or Makefile, or starting with #!.
# Left alone: tests/ref/goldens/ (reference data), generated files that their
# generator writes the lines into (dist/deepseek.c: tools/amalgamate;
# deepseek_impl/unicode_tables.h: tools/gen_unicode.py), which are checked
# but never edited here.
set -u
cd "$(dirname "$0")/.." || exit 1

fix=0
[ "${1:-}" = --fix ] && fix=1

SPDX="SPDX-License-Identifier: MIT"
HOLDER=$(sed -n 's/^Copyright (c) \(.*\)$/\1/p' LICENSE | head -n 1)
if [ -z "$HOLDER" ] || ! head -n 1 LICENSE | grep -q '^MIT License'; then
    echo "check_spdx: LICENSE is not the MIT licence with a 'Copyright (c) YEAR HOLDER' line; update this script"
    exit 1
fi
COPY="Copyright (c) $HOLDER"

files() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files
    else
        find . -type f ! -path './.git/*' ! -path './build*' | sed 's|^\./||'
    fi
}

is_source() {
    case $1 in
        tests/ref/goldens/*) return 1 ;;
        *.c | *.h | *.cu | *.cuh | *.cpp | *.py | *.sh | Makefile | */Makefile) return 0 ;;
    esac
    [ -f "$1" ] && [ "$(head -c 2 "$1")" = "#!" ]
}

generated() {
    case $1 in
        dist/deepseek.c | deepseek_impl/unicode_tables.h) return 0 ;;
    esac
    return 1
}

# has_lines FILE: both lines within the first 4 lines.
has_lines() {
    head -n 4 "$1" > "$tmp/head"
    grep -q "$SPDX" "$tmp/head" && grep -qF "$COPY" "$tmp/head"
}

# add_lines FILE: C-style comments for C/C++/CUDA, # comments otherwise
# (after a #! line, which must stay first).
add_lines() {
    case $1 in
        *.c | *.h | *.cu | *.cuh | *.cpp)
            { printf '/* %s */\n/* %s */\n' "$SPDX" "$COPY"; cat "$1"; } > "$tmp/new" ;;
        *)
            if [ "$(head -c 2 "$1")" = "#!" ]; then
                { head -n 1 "$1"; printf '# %s\n# %s\n' "$SPDX" "$COPY"; tail -n +2 "$1"; } > "$tmp/new"
            else
                { printf '# %s\n# %s\n' "$SPDX" "$COPY"; cat "$1"; } > "$tmp/new"
            fi ;;
    esac
    # cat over the file keeps its mode (scripts stay executable)
    cat "$tmp/new" > "$1"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check_spdx.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
missing=0
checked=0
files > "$tmp/list"
while read -r f; do
    [ -f "$f" ] || continue
    is_source "$f" || continue
    checked=$((checked + 1))
    has_lines "$f" && continue
    if [ $fix -eq 1 ] && ! generated "$f"; then
        add_lines "$f"
        echo "added: $f"
    else
        missing=$((missing + 1))
        if generated "$f"; then
            echo "missing: $f (generated: fix its generator and regenerate it)"
        else
            echo "missing: $f (sh tools/check_spdx.sh --fix)"
        fi
    fi
done < "$tmp/list"
if [ $missing -gt 0 ]; then
    echo "check_spdx: $missing of $checked source files lack the '$SPDX' and '$COPY' lines"
    exit 1
fi
echo "check_spdx: all $checked source files carry the licence lines"
