#!/usr/bin/env bash
# Times the same CPU fits with two ffvol binaries, alternating: OLD (e.g. built at the commit
# before a change) and NEW (this checkout). Usage: OLD=path/to/old/ffvol scripts/bench-cpu-fits.sh
set -eu
OLD=${OLD:?set OLD to the reference ffvol binary}
NEW=${NEW:-target/release/ffvol}
D=/tmp/cmp; rm -rf $D; mkdir -p $D
$NEW simulate ct --phantom shepp2d --geometry paper-ct:128:20 --output $D/sim >/dev/null
common="--device cpu --threads 2"
run() { # tag bin job args...
  local tag=$1 bin=$2 job=$3; shift 3
  $bin fit $job --output $D/$tag-$job $common "$@" >/dev/null 2>&1
  python3 -c "import json,sys; m=json.load(open('$D/$tag-$job/metrics.json')); print('$tag', '$job', round(m.get('train_seconds', 0),3), round(m.get('final_loss',0),6))"
}
for rep in 1 2; do
  for tag in old new; do
    bin=$OLD; [ $tag = new ] && bin=$NEW
    run $tag-$rep $bin occupancy --steps 200 --test-points 16384 --resolution 64 --checkpoint-every 0
    run $tag-$rep $bin volume --steps 200 --checkpoint-every 0
    run $tag-$rep $bin mri --steps 100 --checkpoint-every 0
    run $tag-$rep $bin ct --projections $D/sim/projections.npy --geometry $D/sim/geometry.toml --truth $D/sim/truth.nii.gz --steps 100 --render grid
  done
done
