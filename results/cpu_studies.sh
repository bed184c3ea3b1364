#!/usr/bin/env bash
# The CPU-feasible comparisons of RESULTS.md: the reference studies' presets on the real CIFAR-10 subset
# (CIFAR10_ROOT), three seeds each, then the tables and plots. About 25 minutes on 2 CPU cores.
#   bash results/cpu_studies.sh [output dir, default outputs/results]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/results}
seeds="seed=0,1,2 logger=csv trainer.enable_progress_bar=false trainer.enable_model_summary=false"

# 1. snapshot ensemble vs exp-decay baseline: LeNet-5, 60 epochs, batch 32, plain SGD, no augmentation
python train.py -m experiment=snapshot_vs_exp_snapshot $seeds hydra.sweep.dir=$out/snapshot
python train.py -m experiment=snapshot_vs_exp_baseline $seeds hydra.sweep.dir=$out/exp_baseline

# 2. SWA vs the last SGD model: 4-conv LeNet, 40 epochs; after SGD + cosine, and on a cyclic schedule
python train.py -m experiment=swa_sgd $seeds hydra.sweep.dir=$out/swa_sgd
python train.py -m experiment=swa_cyclic $seeds hydra.sweep.dir=$out/swa_cyclic

# 3. the SGDR study's three cases scaled to LeNet-5 and 60 epochs (150 -> 60: T_0 10 -> 4 gives cycles
#    4+8+16+32; T_0 120 -> 48; milestones stay at 50% / 75%); the 0.85 trigger becomes 0.40, lr 0.05
scaled="model=lenet trainer.max_epochs=60 optimizer.lr=0.05 data.val_size=1000"
python train.py -m experiment=sgdr_study_restarts $scaled schedule.T_0=4 schedule.lr_min=5e-4 \
  schedule.trigger_val_acc=0.4 $seeds hydra.sweep.dir=$out/sgdr_restarts
python train.py -m experiment=sgdr_study_cosine $scaled schedule.T_0=48 schedule.lr_min=5e-4 \
  schedule.trigger_val_acc=0.4 $seeds hydra.sweep.dir=$out/sgdr_cosine
python train.py -m experiment=sgdr_study_step $scaled $seeds hydra.sweep.dir=$out/sgdr_step

python results/summarize.py $out
