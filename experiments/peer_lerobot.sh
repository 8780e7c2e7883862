#!/usr/bin/env bash
# The peer benchmark (BENCHMARKS.md, "Peers"): the same scripted demonstrations trained by LeRobot's own
# Diffusion Policy and by ours, both at the size of our `cpu` preset, for the same steps with one torch
# thread each, then evaluated by our evaluator on the same reporting seeds and compared seed by seed.
#
#   bash experiments/peer_lerobot.sh OUT [STEPS] [EPISODES]
#
# Needs LeRobot's training extra beside the project (`lerobot-train` imports accelerate):
#   uv pip install 'accelerate>=1.14,<2'
# Re-running skips every finished step; a killed training starts again from scratch.
set -euo pipefail
out=${1:?usage: peer_lerobot.sh OUT [STEPS] [EPISODES]}
steps=${2:-2000}
episodes=${3:-50}
env=metaworld/drawer-open-v3
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1
export MUJOCO_GL=${MUJOCO_GL:-osmesa} PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-osmesa}
mkdir -p "$out"

# 20 demonstrations from one 64 px camera (DP3's pose) and the 4-d proprio state. Both policies read the
# copy without the privileged simulator state: LeRobot's Diffusion Policy takes every observation.* key of
# a dataset as an input, so the 39-d state is renamed out of that namespace.
[ -d "$out/demos.zarr" ] || visuomotor collect --env $env --episodes 20 --out "$out/demos.zarr" \
    --image-size 64 --camera-pose dp3 --workers 1
[ -d "$out/demos_noenv.zarr" ] || visuomotor dataset convert "$out/demos.zarr" "$out/demos_noenv.zarr" \
    --rename observation.environment_state=privileged.environment_state
[ -d "$out/demos_lerobot" ] || visuomotor dataset convert "$out/demos_noenv.zarr" "$out/demos_lerobot" \
    --to lerobot --repo-id local/peer_drawer_open
# What LeRobot trains on: the frames after its AV1 encoding (PSNR against ours; low-dim arrays identical).
[ -d "$out/demos_back.zarr" ] || visuomotor dataset convert "$out/demos_lerobot" "$out/demos_back.zarr"
"${PYTHON:-python}" "$(dirname "$0")/roundtrip_fidelity.py" "$out/demos_noenv.zarr" "$out/demos_back.zarr" \
    > "$out/roundtrip.json"

# LeRobot's Diffusion Policy at our cpu preset's size: U-Net 64/128/256, step embedding 64, To = 2,
# horizon 16, 8 actions per chunk, 90% random crop, DDIM-10 at inference, LeRobot's AdamW preset (lr 1e-4,
# warmup 500, cosine), batch 64. Its image encoder can only be a torchvision ResNet: ResNet-18 with
# GroupNorm from scratch (no weights can be downloaded here), against our 16-wide CNN. No EMA (LeRobot has
# none). One data-loading process, like ours.
lerobot_args=(
    --dataset.repo_id=local/peer_drawer_open --dataset.root="$out/demos_lerobot"
    --policy.type=diffusion --policy.device=cpu --policy.push_to_hub=false
    --policy.n_obs_steps=2 --policy.horizon=16 --policy.n_action_steps=8
    --policy.down_dims='[64,128,256]' --policy.diffusion_step_embed_dim=64
    --policy.vision_backbone=resnet18 --policy.pretrained_backbone_weights=null --policy.use_group_norm=true
    --policy.crop_shape='[57,57]' --policy.noise_scheduler_type=DDIM --policy.num_inference_steps=10
    --batch_size=64 --num_workers=0 --log_freq=100 --wandb.enable=false --seed=0
)
ours_args=(--policy diffusion --data "$out/demos_noenv.zarr" --preset cpu --cameras corner2)

# /usr/bin/time (Debian's package `time`) gives the wall time and the peak resident memory of each training.
if [ ! -f "$out/lerobot.time" ]; then
    rm -rf "$out/lerobot_run"
    /usr/bin/time -v -o "$out/lerobot.time.part" lerobot-train "${lerobot_args[@]}" --steps="$steps" \
        --save_freq="$steps" --output_dir="$out/lerobot_run" > "$out/lerobot_train.log" 2>&1
    mv "$out/lerobot.time.part" "$out/lerobot.time"
fi
if [ ! -f "$out/ours.time" ]; then
    rm -rf "$out/ours_run"
    /usr/bin/time -v -o "$out/ours.time.part" visuomotor train "${ours_args[@]}" --steps "$steps" \
        --out "$out/ours_run" > "$out/ours_train.log" 2>&1
    mv "$out/ours.time.part" "$out/ours.time"
fi

# Seconds per training step without start-up, the two back to back under the same load:
# (wall of 60 steps - wall of 10 steps) / 50.
seconds() { local t0; t0=$(date +%s%N); "$@" > /dev/null 2>&1; echo $(( ($(date +%s%N) - t0) / 1000000 )); }
if [ ! -f "$out/step_seconds.txt" ]; then
    rm -rf "$out"/speed_*
    ms=()
    for n in 10 60; do
        ms+=("$(seconds lerobot-train "${lerobot_args[@]}" --steps=$n --save_freq=$n --output_dir="$out/speed_lerobot_$n")")
        ms+=("$(seconds visuomotor train "${ours_args[@]}" --steps $n --no-progress --out "$out/speed_ours_$n")")
    done
    awk -v a="${ms[0]}" -v b="${ms[1]}" -v c="${ms[2]}" -v d="${ms[3]}" 'BEGIN {
        printf "lerobot %.3f s/step\nours %.3f s/step\n", (c - a) / 50000, (d - b) / 50000 }' > "$out/step_seconds.txt"
    rm -rf "$out"/speed_*
fi

# One evaluator, the same reporting seeds (from 1,100,000), the same camera pose.
[ -f "$out/lerobot.json" ] || visuomotor eval --lerobot-checkpoint "$out/lerobot_run/checkpoints/last/pretrained_model" \
    --env $env --episodes "$episodes" --seed-offset 100000 --camera-pose dp3 --workers 1 --json "$out/lerobot.json"
[ -f "$out/ours.json" ] || visuomotor eval --checkpoint "$out/ours_run" \
    --env $env --episodes "$episodes" --seed-offset 100000 --workers 1 --json "$out/ours.json"
visuomotor compare "$out/lerobot.json" "$out/ours.json" --names lerobot,visuomotor
cat "$out/step_seconds.txt" "$out/roundtrip.json"
for who in lerobot ours; do
    echo "$who: $(grep -E 'Elapsed|Maximum resident' "$out/$who.time" | sed 's/^\s*//' | paste -sd ';')"
done
