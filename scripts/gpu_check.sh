#!/usr/bin/env bash
# The flagship model on this machine's CUDA GPUs, into reports/gpu.json (python -m benchmarks.gpu):
# wav2vec2-base-sized training samples/s and peak GPU memory at fp32 and bf16 on one GPU and,
# through `accelerate launch`, on all of them; then one epoch of the flagship recipe's code path
# (`dvc repro`, model=wav2vec2_base train=wav2vec2_base, on the GPU) in a throwaway copy of the
# repository. About 3-5 minutes on one H200. Nothing is downloaded: the model is built from
# transformers' base config with random weights and the data is data/embedded.
#
#   scripts/gpu_check.sh [--out FILE] [--wheels DIR] [-- ARGS for python -m benchmarks.gpu]
#   scripts/gpu_check.sh --fetch-wheels DIR [--present FILE] [--python-version 3.12]
#   scripts/gpu_check.sh --smoke [...]   # the same path on a CPU: tiny model, generated data
#
# Python: $PYTHON, else .venv/bin/python, else python3: the first whose torch is a CUDA build
# that sees a GPU. The training figures need torch, transformers, accelerate, numpy, PyYAML and
# psutil (a stock PyTorch image has them); the dvc repro needs the project's dependencies too
# (pyproject.toml). Missing ones can come from a folder of wheels (--wheels DIR: installed with
# no index into a temporary virtual environment layered on that Python's own packages). Fill
# the folder on a machine that reaches PyPI and has the project installed (.venv/.installed):
# --fetch-wheels DIR downloads, for the GPU machine's Python, every dependency that the package
# list FILE (that machine's `pip list`) lacks; without --present, all but torch and CUDA.
# Exit status: 0 all measured; 1 a part failed or could not run (gpu.json says which);
# 2 nothing could be measured (no CUDA GPU, or packages missing: the message names them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT_FILE=reports/gpu.json
WHEELS=""
FETCH=""
PRESENT=""
PY_VERSION=3.12
SMOKE=""
EXTRA=()
while (($#)); do
    case "$1" in
        --out) OUT_FILE="$2"; shift 2 ;;
        --wheels) WHEELS="$2"; shift 2 ;;
        --fetch-wheels) FETCH="$2"; shift 2 ;;
        --present) PRESENT="$2"; shift 2 ;;
        --python-version) PY_VERSION="$2"; shift 2 ;;
        --smoke) SMOKE=1; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "gpu_check: error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "gpu_check: error: $*" >&2; exit 2; }

# Which of the modules named in "$@" the Python "$PY" cannot import (their top-level names).
missing_modules() {
    PYTHONPATH="$ROOT:$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$@" <<'EOF'
import importlib, sys
missing = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as err:
        missing.append(getattr(err, "name", None) or name)
    except Exception as err:  # a package that is there but broken
        missing.append(f"{name} ({type(err).__name__}: {err})")
print(" ".join(dict.fromkeys(m.split(".")[0] if " " not in m else m for m in missing)))
EOF
}

# ------------------------------------------------------------------ --fetch-wheels (online)
if [[ -n "$FETCH" ]]; then
    PY="${PYTHON:-.venv/bin/python}"
    [[ -x "$PY" ]] || die "--fetch-wheels reads the project's installed dependencies from $PY; run 'make .venv/.installed' first (or set PYTHON)"
    mkdir -p "$FETCH"
    LIST="$(mktemp)"
    "$PY" -m benchmarks.gpu --missing-requirements "$PRESENT" >"$LIST" || die "cannot list the requirements"
    echo "gpu_check: fetching $(wc -l <"$LIST") wheels for Python $PY_VERSION into $FETCH"
    PLATFORMS=()
    for tag in manylinux_2_34 manylinux_2_28 manylinux_2_27 manylinux_2_26 manylinux_2_24 \
        manylinux_2_17 manylinux2014 manylinux1; do
        PLATFORMS+=(--platform "${tag}_x86_64")
    done
    failed=()
    while read -r pin; do
        [[ -z "$pin" ]] && continue
        if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --implementation cp \
            --python-version "$PY_VERSION" "${PLATFORMS[@]}" -d "$FETCH" "$pin" 2>/dev/null; then
            # no wheel for that platform: a pure-Python sdist builds into one anywhere
            "$PY" -m pip wheel -q --no-deps -w "$FETCH" "$pin" || failed+=("$pin")
        fi
    done <"$LIST"
    rm -f "$LIST"
    ((${#failed[@]} == 0)) || die "no wheel for: ${failed[*]}"
    echo "gpu_check: $(find "$FETCH" -name '*.whl' | wc -l) wheels, $(du -sh "$FETCH" | cut -f1) in $FETCH"
    exit 0
fi

# ------------------------------------------------------------------ a Python with CUDA torch
PY=""
REPORT=()
for candidate in ${PYTHON:-} .venv/bin/python python3 python; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    verdict="$(GPU_CHECK_SMOKE="$SMOKE" "$candidate" - <<'EOF' 2>&1 || true
try:
    import torch
except ImportError as err:
    print(f"no torch ({err})")
    raise SystemExit(0)
import os
if os.environ.get("GPU_CHECK_SMOKE"):
    print("ok")
elif torch.version.cuda is None:
    print(f"torch {torch.__version__} is a CPU build (torch.version.cuda is None)")
elif not torch.cuda.is_available() or torch.cuda.device_count() == 0:
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU")
else:
    print("ok")
EOF
)"
    if [[ "$verdict" == ok ]]; then
        PY="$(command -v "$candidate")"
        break
    fi
    REPORT+=("  $candidate: ${verdict##*$'\n'}")
done
if [[ -z "$PY" ]]; then
    {
        echo "gpu_check: error: no Python here has a CUDA build of torch that sees a GPU:"
        ((${#REPORT[@]})) && printf '%s\n' "${REPORT[@]}" || echo "  (no python found)"
        if command -v nvidia-smi >/dev/null 2>&1; then
            echo "  nvidia-smi -L: $(nvidia-smi -L 2>&1 | head -3 | tr '\n' ' ')"
        else
            echo "  nvidia-smi: not found (no NVIDIA driver on this machine?)"
        fi
        echo "Install a CUDA build of torch (e.g. .venv/bin/pip install torch from PyPI on Linux" \
            "x86-64, or from the PyTorch index for your CUDA version), or set PYTHON=/path/to/python."
    } >&2
    exit 2
fi
if [[ -n "$SMOKE" ]]; then
    echo "gpu_check: --smoke: python $PY on the CPU"
else
    echo "gpu_check: python $PY ($("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "|", torch.cuda.device_count(), "x", torch.cuda.get_device_name(0))'))"
fi

# ------------------------------------------------------------------ packages
LAYER=""
if [[ -n "$WHEELS" ]]; then
    # A virtual environment layered on $PY's packages (a .pth file names them): the wheels go
    # in there, with their commands (dvc), and the stages' `python` sees both.
    [[ -d "$WHEELS" ]] || die "--wheels $WHEELS: no such folder"
    LAYER="$(mktemp -d -t audioclf-gpu-env-XXXXXX)"
    trap 'rm -rf "$LAYER"' EXIT
    "$PY" -m venv --without-pip "$LAYER" || die "$PY -m venv failed (is the venv module installed?)"
    purelib="$("$LAYER/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$PY" -c 'import site; print("\n".join(site.getsitepackages()))' >"$purelib/_gpu_check_base.pth"
    echo "gpu_check: installing $(find "$WHEELS" -maxdepth 1 -name '*.whl' | wc -l) wheels from $WHEELS (no index) into $LAYER"
    "$PY" -m pip --python "$LAYER/bin/python" install -q --no-index --no-deps --no-compile \
        --no-cache-dir --disable-pip-version-check "$WHEELS"/*.whl \
        || die "pip could not install the wheels in $WHEELS (pip >= 22.3 is needed for --python)"
    PY="$LAYER/bin/python"
fi

BENCH_MODULES=(torch transformers accelerate numpy yaml psutil)
missing="$(missing_modules "${BENCH_MODULES[@]}")"
[[ -z "$missing" ]] || die "$PY lacks $missing, which the training figures need (pip install them, or pass --wheels DIR)"

# the project's dependencies (pyproject.toml) by import name, then what the stages import
REPRO_MODULES=(datasets evaluate dvc dvc_data hydra omegaconf mlflow soundfile soxr sklearn
    matplotlib pyarrow safetensors tqdm audioclf.stages.download audioclf.stages.resample
    audioclf.stages.featurize audioclf.stages.train audioclf.stages.evaluate audioclf.testing)
ARGS=(--out "$OUT_FILE" ${SMOKE:+--smoke})
skipped=""
missing="$(missing_modules "${REPRO_MODULES[@]}")"
if [[ -n "$missing" ]]; then
    skipped="missing Python packages: $missing (pass --wheels DIR, see --help)"
elif ! command -v git >/dev/null 2>&1; then
    skipped="git is not installed (the throwaway copy is a git + DVC repository)"
elif ! PATH="$(dirname "$PY"):$PATH" command -v dvc >/dev/null 2>&1; then
    skipped="the dvc command is not on PATH (the dvc package is there)"
fi
if [[ -n "$skipped" ]]; then
    echo "gpu_check: warning: the dvc repro part cannot run: $skipped." \
        "Measuring the training figures only." >&2
    ARGS+=(--repro-skipped "$skipped")
fi

export PYTHONPATH="$ROOT:$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export TQDM_DISABLE=1 DVC_NO_ANALYTICS=1
status=0
"$PY" -m benchmarks.gpu "${ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"} || status=$?
if ((status == 0)) && [[ -n "$skipped" ]]; then
    status=1
fi
exit "$status"
