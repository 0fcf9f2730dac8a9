#!/bin/bash
# Device-side driver for the gpu speedrun (not committed). Usage: bash .gpu/go.sh start|poll|ship [seconds]
set -u
MODE=$1; WAIT=${2:-560}
RUN=/root/run; LOG=/root/run.log
export NANOCODE_HOME=/root/home PYTHONPATH=/root/src:/root/whl JAX_LOG_COMPILES=1
if [ "$MODE" = start ]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
  pip install -q --no-deps --target /root/whl .whl/*.whl 2>&1 | tail -2
  rm -rf /root/src && mkdir -p /root/src && cp -r agent nanocode tools training SOUL.md pyproject.toml /root/src/
  cd /root/src && setsid nohup python -m training.speedrun --preset gpu --out $RUN > $LOG 2>&1 < /dev/null &
  sleep 5
fi
start=$(date +%s)
if [ "$MODE" = start ] || [ "$MODE" = poll ]; then
  while [ $(( $(date +%s) - start )) -lt $WAIT ]; do
    pgrep -f "training[.]speedrun" > /dev/null || break
    [ -f $RUN/rl/complete.json ] && [ "${STOP_AFTER_RL:-1}" = 1 ] && break
    sleep 10
  done
  echo "=== $(date) alive: $(pgrep -f 'training[.]speedrun' | head -1)"
  grep -v "Finished\|Compiling\|jaxpr\|tracing" $LOG | tr '\r' '\n' | grep -v "^\s*$" | tail -40
  cat $RUN/timings.json 2>/dev/null
  echo; echo "compiles:"; grep -c "Finished XLA compilation" $LOG
fi
if [ "$MODE" = ship ]; then
  pkill -f "training[.]speedrun"; sleep 2
  cd /root/src && python - <<'PY'
import json, os, shutil, jax.numpy as jnp
from pathlib import Path
from nanocode.checkpoint import load_model, save_model
run = Path("/root/run"); out = Path(os.environ["OUT"]) / "nanocode-d8-gpu"
final = (run / "model").resolve() if (run / "model").exists() else run / "dpo" / "model"
for stage in ("rl", "dpo"):
    if (run / stage / "model" / "config.json").is_file() and not (run / "model").exists():
        final = run / stage / "model"; break
print("final", final)
model, tok, info = load_model(final)
save_model(out, model, tok, meta={**info.get("meta", {}), "from": str(final)}, dtype=jnp.bfloat16)
rep = out / "report"; (rep / "logs").mkdir(parents=True)
for f in ("speedrun.json", "timings.json", "summary.json"):
    if (run / f).is_file(): shutil.copy(run / f, rep / f)
for stage in ("base", "sft", "dpo", "rl"):
    if (run / stage / "log.jsonl").is_file(): shutil.copy(run / stage / "log.jsonl", rep / "logs" / f"{stage}.jsonl")
for f in (run / "logs").glob("*.log"): shutil.copy(f, rep / "logs" / f.name)
for f in ("synth/stats.json",): 
    if (run / f).is_file(): shutil.copy(run / f, rep / "synth_stats.json")
for p in run.rglob("gate.json"): shutil.copy(p, rep / f"{p.parent.name}_gate.json")
for p in (run / "eval").glob("*.json") if (run / "eval").is_dir() else []: shutil.copy(p, rep / f"eval_{p.name}")
PY
  cp $LOG $OUT/run.log; ls -R $OUT | head -40; du -sh $OUT
fi
