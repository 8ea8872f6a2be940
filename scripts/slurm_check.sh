#!/usr/bin/env bash
# `eval --shard auto` under a real SLURM scheduler on this one machine (issue 21).
#
# As root on Debian 12: installs slurmctld, slurmd, slurm-client and munge with apt-get when
# missing, starts munged (unless one already answers), slurmctld and slurmd on a one-node
# slurm.conf in a temporary folder (see ../shared/notes/slurm-localhost.md), submits a 4-task job
# array (sbatch --array=0-3) whose tasks run `race-eval eval --shard auto` with the tiny model
# over RACE-M test (../shared/data/race-m/test.jsonl) when present, else datasets/sample's test
# split. It cancels task 3 while it runs, checks that `race-eval merge` refuses the three runs
# present (shard 3/4 missing), requeues task 3, waits for it, merges all four and checks the
# merged run against an unsharded run (same accuracy, same prediction and label per id, logits
# within 1e-4). The daemons it started are stopped by their pids on exit. Exits non-zero on any
# failure or mismatch; prints timings.
#
# Usage: sudo bash scripts/slurm_check.sh        (KEEP=1 keeps the temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

T0=$(date +%s.%N)
LAST=$T0
TIMINGS=()
lap() { # lap NAME: time since the previous lap
  local now
  now=$(date +%s.%N)
  TIMINGS+=("$(awk -v a="$LAST" -v b="$now" -v n="$1" 'BEGIN { printf "%-34s %6.1f s", n, b - a }')")
  LAST=$now
}
say() { echo "slurm_check: $*"; }
die() {
  echo "slurm_check: FAILED: $*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts munged, slurmctld and slurmd)"

# --- packages -----------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
  ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi
command -v python3 >/dev/null || die "python3 is needed for the comparison step"
lap "packages"

# --- the binary ---------------------------------------------------------------------------------
BIN=$ROOT/target/release/race-eval
if [ ! -x "$BIN" ]; then
  say "building $BIN"
  cargo build --release
fi
lap "release binary"

MODEL=$ROOT/datasets/models/tiny-albert
if [ -f "$ROOT/../shared/data/race-m/test.jsonl" ]; then
  DATA=$(cd "$ROOT/../shared/data/race-m" && pwd)/test.jsonl
else
  DATA=$ROOT/datasets/sample
fi
say "data: $DATA"

# --- a temporary cluster ------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slurm_check.XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK"/{state,spool,log,out,results}
STARTED_MUNGED=""

cleanup() {
  local rc=$?
  set +e
  for pidfile in "$WORK/slurmd.pid" "$WORK/slurmctld.pid"; do
    if [ -s "$pidfile" ]; then
      local pid
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
  done
  if [ -n "$STARTED_MUNGED" ]; then
    kill "$STARTED_MUNGED" 2>/dev/null
  fi
  if [ "$rc" != 0 ]; then
    echo "--- slurmctld.log (last 20 lines)" >&2
    tail -n 20 "$WORK/log/slurmctld.log" >&2 2>/dev/null
    echo "--- slurmd.log (last 20 lines)" >&2
    tail -n 20 "$WORK/log/slurmd.log" >&2 2>/dev/null
    for f in "$WORK"/out/*; do [ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }; done
    echo "slurm_check: kept $WORK" >&2
  elif [ -z "${KEEP:-}" ]; then
    rm -rf "$WORK"
  else
    echo "slurm_check: kept $WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for d in slurmctld slurmd; do
  if pid=$(pidof "$d"); then
    die "a $d is already running (pid $pid), not started by this check: stop it first"
  fi
done

# munge: a key, then munged unless one already answers
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/lib/munge
  chown munge:munge /run/munge /var/lib/munge
  # as root, with its log and pid file in the temporary folder (root-owned, so munged finds
  # them secure)
  munged --force --log-file="$WORK/log/munged.log" --pid-file="$WORK/munged.pid"
  for _ in $(seq 50); do [ -s "$WORK/munged.pid" ] && break; sleep 0.1; done
  STARTED_MUNGED=$(cat "$WORK/munged.pid")
  munge -n | unmunge >/dev/null || die "munged (pid $STARTED_MUNGED) does not answer"
fi

HOST=$(hostname -s)
export SLURM_CONF=$WORK/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=racecheck
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
NodeName=$HOST CPUs=$(nproc) State=UNKNOWN
PartitionName=check Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 300); do
  [ "$(sinfo -h -n "$HOST" -o %t 2>/dev/null)" = idle ] && break
  sleep 0.2
done
[ "$(sinfo -h -n "$HOST" -o %t 2>/dev/null)" = idle ] || die "node $HOST is not idle after 60 s: $(sinfo 2>&1)"
say "slurmctld pid $(cat "$WORK/slurmctld.pid"), slurmd pid $(cat "$WORK/slurmd.pid"), node $HOST idle"
lap "daemons up, node idle"

# --- the job array --------------------------------------------------------------------------------
CANCEL=3
# The task to be cancelled waits while $WORK/hold.N exists, so that it is surely cancelled while
# running even when each task takes a fraction of a second (datasets/sample); its requeued run
# finds the file gone and evaluates.
cat >"$WORK/task.sh" <<EOF
#!/bin/bash
#SBATCH --job-name=race-shard
#SBATCH --array=0-3
#SBATCH --cpus-per-task=1
#SBATCH --output=$WORK/out/%A_%a.out
set -euo pipefail
echo "task \$SLURM_ARRAY_TASK_ID of \$SLURM_ARRAY_TASK_COUNT (restart \${SLURM_RESTART_COUNT:-0})"
for _ in \$(seq 600); do [ -e "$WORK/hold.\$SLURM_ARRAY_TASK_ID" ] || break; sleep 0.1; done
exec "$BIN" eval --model "$MODEL" --data "$DATA" --split test --shard auto --output-dir "$WORK/results"
EOF
touch "$WORK/hold.$CANCEL"
JOB=$(sbatch --parsable "$WORK/task.sh")
say "submitted job array $JOB (tasks 0-3)"

task_state() { scontrol show job -o "${JOB}_$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2; }
wait_task() { # wait_task N STATE...: until task N is in one of STATEs (120 s at most)
  local n=$1 s
  shift
  for _ in $(seq 600); do
    s=$(task_state "$n")
    for want in "$@"; do [ "$s" = "$want" ] && return 0; done
    sleep 0.2
  done
  die "task ${JOB}_$n is ${s:-unknown}, not $* after 120 s"
}

wait_task $CANCEL RUNNING
scancel "${JOB}_$CANCEL"
wait_task $CANCEL CANCELLED
rm -f "$WORK/hold.$CANCEL"
say "cancelled task ${JOB}_$CANCEL while running"
for i in 0 1 2; do wait_task $i COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY; done
for i in 0 1 2; do [ "$(task_state $i)" = COMPLETED ] || die "task ${JOB}_$i ended $(task_state $i)"; done
lap "tasks 0-2 done, task 3 cancelled"

# merge must refuse the runs present now: shard 3/4 is missing
mapfile -t RUNS < <(find "$WORK/results" -mindepth 1 -maxdepth 1 -type d | sort)
[ "${#RUNS[@]}" = 3 ] || die "expected 3 shard runs before the requeue, found ${#RUNS[@]}: ${RUNS[*]}"
set +e
REFUSAL=$("$BIN" merge "${RUNS[@]}" --output-dir "$WORK/merged" 2>&1)
rc=$?
set -e
[ "$rc" = 1 ] || die "merge of 3 of 4 shards exited $rc, not 1: $REFUSAL"
grep -q "3/4 missing" <<<"$REFUSAL" || die "merge did not name shard 3/4 as missing: $REFUSAL"
[ ! -e "$WORK/merged" ] || die "the refused merge wrote $WORK/merged"
say "merge refused as it should: $REFUSAL"

# requeue the cancelled task: it keeps its array index and the array's variables, which
# `sbatch --array=3` would not (SLURM_ARRAY_TASK_COUNT=1 there)
scontrol requeue "${JOB}_$CANCEL"
# slurmctld holds a requeued job back for the credential lifetime (BeginTime = now + ~121 s);
# nothing of the old run is left here, so let it start now
scontrol update JobId="${JOB}_$CANCEL" StartTime=now
wait_task $CANCEL COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY
[ "$(task_state $CANCEL)" = COMPLETED ] || die "requeued task ${JOB}_$CANCEL ended $(task_state $CANCEL)"
say "requeued task ${JOB}_$CANCEL completed"
lap "task 3 requeued and done"

for i in 0 1 2 3; do
  grep -h "^shard $i/4 from SLURM_ARRAY_TASK_ID=$i " "$WORK"/out/"${JOB}_$i".out ||
    die "task $i did not report shard $i/4 from SLURM_ARRAY_TASK_ID: $(cat "$WORK"/out/"${JOB}_$i".out)"
done

mapfile -t RUNS < <(find "$WORK/results" -mindepth 1 -maxdepth 1 -type d | sort)
[ "${#RUNS[@]}" = 4 ] || die "expected 4 shard runs, found ${#RUNS[@]}: ${RUNS[*]}"
MERGED=$("$BIN" merge "${RUNS[@]}" --output-dir "$WORK/merged" | sed -n 's/^run: //p')
[ -d "$MERGED" ] || die "merge printed no run folder"
lap "merge"

FULL=$("$BIN" eval --model "$MODEL" --data "$DATA" --split test -q --output-dir "$WORK/full" |
  sed -n 's/^run: //p')
[ -d "$FULL" ] || die "the unsharded eval printed no run folder"
lap "unsharded eval"

python3 - "$MERGED" "$FULL" <<'EOF'
import json, sys
merged, full = sys.argv[1], sys.argv[2]
def load(d):
    s = json.load(open(f"{d}/summary.json"))
    p = [json.loads(l) for l in open(f"{d}/predictions.jsonl")]
    return s, p
(sm, pm), (sf, pf) = load(merged), load(full)
bad = []
if sm["accuracy"] != sf["accuracy"]:
    bad.append(f"accuracy {sm['accuracy']} vs {sf['accuracy']}")
if [p["id"] for p in pm] != [p["id"] for p in pf]:
    bad.append("the question ids differ (or their order)")
worst = 0.0
for a, b in zip(pm, pf):
    for k in ("label", "pred"):
        if a[k] != b[k]:
            bad.append(f"{a['id']}: {k} {a[k]} vs {b[k]}")
    worst = max([worst] + [abs(x - y) for x, y in zip(a["logits"], b["logits"])])
if worst > 1e-4:
    bad.append(f"logits differ by up to {worst:g} (> 1e-4)")
def acc(s):
    o = s["accuracy"]["overall"]
    return f"{100 * o['accuracy']:.2f}% ({o['correct']}/{o['total']})"
print(f"slurm_check: merged {len(pm)} questions, accuracy {acc(sm)}; unsharded {len(pf)}, "
      f"accuracy {acc(sf)}; "
      f"predictions equal: {not bad}, largest logit difference {worst:.2g}")
for b in bad[:20]:
    print("slurm_check: MISMATCH", b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
lap "comparison"

TOTAL=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
say "timings:"
printf '  %s\n' "${TIMINGS[@]}"
printf '  %-34s %6.1f s\n' "total" "$TOTAL"
say "OK: 4 SLURM array tasks with --shard auto (one cancelled and requeued) merge into the unsharded run"
