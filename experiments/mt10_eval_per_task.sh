#!/usr/bin/env bash
# Evaluate a run on every MT10 task separately, on the reporting seeds, in passes of PASS episodes, so
# that a stop keeps every finished (task, pass) and two copies of this script (one per core) can share the
# work of one run: each JSON is claimed by a lock file before its evaluation starts.
#
#   bash experiments/mt10_eval_per_task.sh RUN OUT_DIR [EPISODES] [PASS] [rev]
#
# Writes OUT_DIR/NAME_TASK_SEEDOFFSET.json (NAME: the run directory's name, or $NAME) for each task and
# pass; seeds are 1,100,000 + the pass's offset + episode. Pool them with `visuomotor compare
# A1.json,A2.json,... B1.json,B2.json,...` (episodes pair up on task and seed). "rev" walks the tasks
# backwards (for the second copy). A copy killed mid-evaluation leaves its lock directory: remove
# OUT_DIR/*.lock before re-running when no copy runs. $EVAL_OPTS adds options to every eval (e.g.
# "-o num_inference_steps=25": give such a variant its own $NAME).
set -euo pipefail
run=${1:?usage: mt10_eval_per_task.sh RUN OUT_DIR [EPISODES] [PASS] [rev]}
out=${2:?usage: mt10_eval_per_task.sh RUN OUT_DIR [EPISODES] [PASS] [rev]}
episodes=${3:-50}
pass=${4:-10}
order=${5:-fwd}
export OMP_NUM_THREADS=1 MUJOCO_GL=${MUJOCO_GL:-osmesa} PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-osmesa}
vm=${VISUOMOTOR:-visuomotor}
tasks=(reach push pick-place door-open drawer-open drawer-close button-press-topdown peg-insert-side
       window-open window-close)
if [ "$order" = rev ]; then
    for ((i = ${#tasks[@]} - 1; i >= 0; i--)); do reversed+=("${tasks[i]}"); done
    tasks=("${reversed[@]}")
fi
name=${NAME:-$(basename "$run")}
read -r -a extra <<< "${EVAL_OPTS:-}"
mkdir -p "$out"
for ((offset = 0; offset < episodes; offset += pass)); do
    n=$((episodes - offset < pass ? episodes - offset : pass))
    for task in "${tasks[@]}"; do
        json="$out/${name}_${task}_$((100000 + offset)).json"
        # mkdir is atomic: the copy that makes the lock evaluates; a finished JSON is never redone
        [ -f "$json" ] || ! mkdir "$json.lock" 2>/dev/null && continue
        "$vm" eval --checkpoint "$run" --env "metaworld/$task-v3" --episodes "$n" \
            --seed-offset $((100000 + offset)) --workers 1 --json "$json.tmp" "${extra[@]}" >> "$out/${name}_eval.log" 2>&1 \
            && mv "$json.tmp" "$json"
        rmdir "$json.lock"
    done
done
