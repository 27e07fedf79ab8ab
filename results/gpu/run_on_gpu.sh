# GPU check (device tool): the project's training loop end to end on a GPU.
set -o pipefail
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
echo "cores $(nproc)"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "== 1. LeNet-5 on the 5,000 real MNIST digits (experiments/lenet.py:mnist), end to end"
( time TFDS_DATA_DIR=$PWD/.gpu/tfds timeout 150 python3 launch.py --config=experiments/lenet.py:mnist --workdir=/tmp/lenet_gpu ) > $OUT/lenet.log 2>&1
grep -E "step [0-9]+/|eval at|holds|real|Error" $OUT/lenet.log | cut -c1-330 | tail -12
cp /tmp/lenet_gpu/report.md $OUT/lenet_report.md 2>/dev/null
echo "== 2. ResNet-50's ImageNet recipe (experiments/resnet.py:imagenet: bf16, batch 256, 10-crop eval, 12 grain workers) on TFDS mock imagenet2012: 30 steps, then resumed to 60"
for steps in 30 60; do
  ( time MOCK_EXAMPLES=1024 timeout 170 python3 tests/mock_launch.py --config=experiments/resnet.py:imagenet --workdir=/tmp/r50 --config.total_steps=$steps --config.num_epochs=0 --config.data.num_workers=12 --config.checkpoint_every_steps=30 --config.eval_every_epochs=0 --config.eval_every_steps=30 --config.log_every_steps=10 ) > $OUT/resnet50_mock_$steps.log 2>&1
  grep -E "step [0-9]+/|eval at|esum|estor|compil|real|Error|rror:" $OUT/resnet50_mock_$steps.log | cut -c1-330 | tail -12
done
cp /tmp/r50/report.md $OUT/resnet50_mock_report.md 2>/dev/null
cp /tmp/r50/resnet50/metrics.jsonl $OUT/resnet50_mock_metrics.jsonl 2>/dev/null || true
