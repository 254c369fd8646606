#!/usr/bin/env bash
# bench-gang.sh — time from "all ranks launched" to rank 0's first [Train] line, for a gang of the
# DDP trainer fixture (Tests/Fixtures/trainer/ddp/train_gpt_ddp.py) on this machine, per launch mode.
#
#   scripts/bench-gang.sh [-r REPS] [-w "2 3"] [-m "direct torchrun standalone cluster"] [-p PYTHON] [-k DIR]
#
# Modes (one launch_<mode> function each; the same trainer, same arguments in every mode):
#   single      world size 1, plain `python train_gpt_ddp.py` (no process group): the trainer's own
#               time to step 1 (interpreter + torch import, model init, data, first step); run once
#               per repetition as the baseline, whatever -w says.
#   direct      all N ranks started at once as plain processes with MASTER_ADDR=127.0.0.1,
#               MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE set: what the coordinator
#               does once all ranks are leased (the trainer calls init_process_group("gloo", env://)).
#   torchrun    `torchrun --nnodes 1 --nproc_per_node N --rdzv_backend c10d
#               --rdzv_endpoint 127.0.0.1:PORT`, run with the fixture's python (see torchrun_shim)
#   standalone  `torchrun --standalone --nnodes 1 --nproc_per_node N`
#   cluster     our coordinator leasing N workers a `world: {gpus: N}` job: from "all ranks leased"
#               to rank 0's step 1 (see run_cluster below)
# A further mode (e.g. "cluster": the coordinator leasing N workers) is a function
#   launch_<mode> N PORT RUNDIR ARGS...
# that starts everything in the background without waiting and returns at once, each process
# leading its own session (setsid) so `kill -- -PID` ends it with its children; it must write
#   RUNDIR/stdout  rank 0's stdout (the other ranks print nothing on stdout)
#   RUNDIR/pids    the pids to wait for, one per line
# and stderr wherever it likes (RUNDIR/stderr*). The clock starts right before launch_<mode> is
# called and stops when a line containing "[Train] " appears in RUNDIR/stdout (polled every 5 ms).
# Add the mode's name to -m.
#
# Output: one line per run, then per (mode, N) the median/min/max seconds, each mode's median minus
# the single-process median (the launcher's + rendezvous' overhead), and the ratio of each mode's
# median to direct's; last, the same as one JSON object on a line starting with "JSON ".
#
# Python: -p, else $TTS_TRAINER_PYTHON, else the venv printed by Tests/Fixtures/trainer/trainer_env.sh
# (torch + tensorboardX). Every process runs with torch.set_num_threads(1) (OMP_NUM_THREADS=1).
# Exit status: 0, or 1 when a run did not reach step 1 within 120 s or a rank failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
fixtures="$root/Tests/Fixtures/trainer"
trainer="$fixtures/ddp/train_gpt_ddp.py"

reps=5
worlds="2 3"
modes="direct torchrun standalone cluster"
py="${TTS_TRAINER_PYTHON:-}"
keep=""
while getopts "r:w:m:p:k:h" opt; do
    case "$opt" in
        r) reps="$OPTARG" ;;
        w) worlds="$OPTARG" ;;
        m) modes="$OPTARG" ;;
        p) py="$OPTARG" ;;
        k) keep="$OPTARG" ;;
        *) sed -n '2,33p' "$0"; exit 2 ;;
    esac
done
if [[ -z "$py" ]]; then
    py="$(bash "$fixtures/trainer_env.sh" | tail -n 1)"
fi

if [[ -n "$keep" ]]; then work="$keep"; mkdir -p "$work"; else work="$(mktemp -d -t bench-gang.XXXXXX)"; fi
current=""  # the run in progress: on an early exit, its still-running process groups are killed
cleanup_all() {
    local p
    if declare -F cluster_stop >/dev/null; then cluster_stop; fi
    if [[ -n "$current" && -f "$current/pids" ]]; then
        while read -r p; do
            if kill -0 "$p" 2>/dev/null; then kill -9 -- "-$p" 2>/dev/null || true; fi
        done < "$current/pids"
    fi
    [[ -n "$keep" ]] || rm -rf "$work"
}
trap cleanup_all EXIT

read -r -a inputs <<< "$("$py" "$fixtures/make_fixture_manifests.py" --out "$work/inputs" --train 96 --val 12)"
cores="$(nproc --all)"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PATH="$(dirname "$py"):$PATH"
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT
# Effective batch 6 x 2 per step whatever N (per-rank batch 6/N rounded down, at least 1); 3 steps.
trainer_args() { # N OUTDIR
    local n="$1" out="$2" b=$(( 6 / $1 ))
    (( b >= 1 )) || b=1
    printf '%s\n' "${inputs[@]}" --output-dir "$out" --batch-size "$b" --grad-accumulation 2 \
        --learning-rate 1e-2 --warmup-steps 5 --log-interval 1 --val-interval 1000 --max-steps 3 \
        --epochs 100 --num-workers 1 --scheduler cosine --no-aim
}

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- modes ---------------------------------------------------------------------------------------

launch_single() { # N PORT RUNDIR ARGS...
    local dir="$3"; shift 3
    setsid "$py" "$trainer" "$@" > "$dir/stdout" 2> "$dir/stderr" &
    echo $! > "$dir/pids"
}

launch_direct() { # N PORT RUNDIR ARGS...
    local n="$1" port="$2" dir="$3" r; shift 3
    : > "$dir/pids"
    for (( r = 0; r < n; r++ )); do
        if (( r == 0 )); then exec 3> "$dir/stdout"; else exec 3> /dev/null; fi
        MASTER_ADDR=127.0.0.1 MASTER_PORT="$port" RANK="$r" WORLD_SIZE="$n" LOCAL_RANK="$r" LOCAL_WORLD_SIZE="$n" \
            setsid "$py" "$trainer" "$@" >&3 2> "$dir/stderr.$r" &
        echo $! >> "$dir/pids"
        exec 3>&-
    done
}

# torch 1.13's launcher on Python 3.11 dies before starting any worker (Std.from_str("0") returns
# None: iterating an IntFlag no longer yields its 0 member; "AttributeError: 'NoneType' object has
# no attribute 'get'" in to_map), /usr/bin/torchrun included. The modes below therefore run
# torch.distributed.run's main() through this shim, which fixes only that function (None -> Std.NONE).
torchrun_shim='
import sys
from torch.distributed.elastic.multiprocessing import api
_orig = api.Std.from_str.__func__
def _from_str(cls, vm):
    r = _orig(cls, vm)
    if isinstance(r, dict):
        return {k: (api.Std.NONE if v is None else v) for k, v in r.items()}
    return api.Std.NONE if r is None else r
api.Std.from_str = classmethod(_from_str)
from torch.distributed.run import main
sys.argv[0] = "torchrun"
main()
'

launch_torchrun() { # N PORT RUNDIR ARGS...
    local n="$1" port="$2" dir="$3"; shift 3
    setsid "$py" -c "$torchrun_shim" --nnodes 1 --nproc_per_node "$n" --rdzv_backend c10d \
        --rdzv_endpoint "127.0.0.1:$port" "$trainer" "$@" > "$dir/stdout" 2> "$dir/stderr" &
    echo $! > "$dir/pids"
}

launch_standalone() { # N PORT RUNDIR ARGS...
    local n="$1" dir="$3"; shift 3
    setsid "$py" -c "$torchrun_shim" --standalone --nnodes 1 --nproc_per_node "$n" \
        "$trainer" "$@" > "$dir/stdout" 2> "$dir/stderr" &
    echo $! > "$dir/pids"
}

# ---- cluster: the coordinator leases the gang ------------------------------------------------------
# Not a launch_<mode>: the coordinator and max(N) CPU workers (stand-in A6000s) are started once,
# outside the clock; each repetition submits a `world: {gpus: N}` job of the same trainer and
# arguments (preset batch 6/N × 2N: each rank runs 6/N × 2, as in the other modes) and measures,
# from the coordinator's own records, the time from "all ranks leased" (the latest leased_at of
# the run's rank attempts, SQLite) to rank 0's step 1 (the wall time the worker read its [Train]
# line at, `tts-coordinator metrics`). Binaries: $TTS_BENCH_BIN, else the release build.
cluster_up=""
cluster_start() {
    local bin="${TTS_BENCH_BIN:-}" maxn=0 n i
    [[ -n "$bin" ]] || bin="$(cd "$root" && swift build -c release --show-bin-path 2>/dev/null)"
    [[ -x "$bin/tts-coordinator" && -x "$bin/tts-worker" ]] || { echo "bench-gang: no tts-coordinator/tts-worker in '$bin' (build: swift build -c release, or set TTS_BENCH_BIN)" >&2; exit 1; }
    for n in $worlds; do (( n > maxn )) && maxn=$n; done
    cport="$(free_port)"; chttp="$(free_port)"
    cdir="$work/cluster"; mkdir -p "$cdir"
    cbin="$bin"
    setsid "$bin/tts-coordinator" serve --listen "tcp://127.0.0.1:$cport" --http "127.0.0.1:$chttp" --db "$cdir/c.sqlite" \
        --no-wandb --no-slack --checkpoint-root "$cdir/runs" > "$cdir/coordinator.log" 2>&1 &
    echo $! > "$cdir/pids"
    for (( i = 0; i < maxn; i++ )); do
        setsid "$bin/tts-worker" join "tcp://127.0.0.1:$cport" --gpu "$i" --name "bench$i" --state-dir "$cdir/w$i" \
            --device-name "NVIDIA RTX A6000" --device-memory-gb 48 --no-torch > "$cdir/worker$i.log" 2>&1 &
        echo $! >> "$cdir/pids"
    done
    export TTS_API="http://127.0.0.1:$chttp"
    local deadline=$(( SECONDS + 30 ))
    until [[ "$("$bin/tts-coordinator" workers --json 2>/dev/null | grep -c '"state" : "live"')" -ge "$maxn" ]]; do
        (( SECONDS < deadline )) || { echo "bench-gang: the cluster's workers did not come up; logs in $cdir" >&2; exit 1; }
        sleep 0.2
    done
    cluster_up=1
}
cluster_stop() {
    [[ -n "$cluster_up" ]] || return 0
    local p
    while read -r p; do kill -TERM -- "-$p" 2>/dev/null || true; done < "$cdir/pids"
    sleep 1
    while read -r p; do kill -9 -- "-$p" 2>/dev/null || true; done < "$cdir/pids"
    cluster_up=""
}
run_cluster() { # N REP
    local n="$1" rep="$2" job run dt b=$(( 6 / $1 )) a
    (( b >= 1 )) || b=1
    a=$(( 12 / b ))
    job="$cdir/job-$n-$rep.yaml"
    {
        echo "name: bench-gang-$n-$rep"; echo "project: bench"
        echo "env: {PYTHONUNBUFFERED: \"1\", OMP_NUM_THREADS: \"1\"}"
        printf 'command: [%s, %s' "\"$py\"" "\"$trainer\""
        for x in "${inputs[@]}"; do printf ', "%s"' "$x"; done
        printf ', --output-dir, "{output_dir}", --batch-size, "{batch_size}", --grad-accumulation, "{grad_accum}", --learning-rate, "1e-2", --warmup-steps, "5", --log-interval, "1", --val-interval, "1000", --max-steps, "{max_steps}", --epochs, "100", --num-workers, "1", --scheduler, cosine, --no-aim]\n'
        echo "max_steps: 3"
        echo "presets: {a6000: {match: {name: A6000}, batch_size: $b, grad_accum: $a}}"
        echo "world: {gpus: $n}"
    } > "$job"
    run="$("$cbin/tts-coordinator" submit "$job" --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["id"])')"
    local deadline=$(( SECONDS + 120 )) state=""
    until [[ "$state" == "succeeded" || "$state" == "failed" ]]; do
        (( SECONDS < deadline )) || break
        sleep 0.2
        state="$("$cbin/tts-coordinator" runs --json | "$py" -c "import json,sys; print(next((r['state'] for r in json.load(sys.stdin) if r['id'] == '$run'), ''))")"
    done
    if [[ "$state" != "succeeded" ]]; then
        echo "  cluster N=$n rep $rep: FAILED (run $run: ${state:-timeout}; logs in $cdir)" >&2
        status=1
        return
    fi
    dt="$("$cbin/tts-coordinator" metrics "$run" --key train/text_loss --json | "$py" -c "
import json, sqlite3, sys
first = json.load(sys.stdin)['series'][0]
assert first['step'] == 1, first
db = sqlite3.connect('file:$cdir/c.sqlite?mode=ro', uri=True)
leased = db.execute('SELECT MAX(a.leased_at) FROM shard_attempts a JOIN shards s ON s.id = a.shard_id WHERE s.run_id = ?', ('$run',)).fetchone()[0]
print('%.3f' % (first['wallTime'] - leased))")"
    printf '%s\t%s\t%s\n' cluster "$n" "$dt" >> "$results"
    printf '  %-10s N=%s rep %s: %6.3f s from all ranks leased to rank 0 step 1\n' cluster "$n" "$rep" "$dt"
}

# ---- one timed run -------------------------------------------------------------------------------

now() { echo "${EPOCHREALTIME/,/.}"; }
status=0
results="$work/results.tsv"
: > "$results"
run_once() { # MODE N REP
    local mode="$1" n="$2" rep="$3" dir port t0 t1 dt p rc=0 ok=1
    dir="$work/runs/$mode-$n-$rep"
    mkdir -p "$dir"
    port="$(free_port)"
    mapfile -t args < <(trainer_args "$n" "$dir/out")
    current="$dir"
    t0="$(now)"
    "launch_$mode" "$n" "$port" "$dir" "${args[@]}"
    local deadline=$(( ${EPOCHREALTIME/[.,]/} + 120000000 )) alive
    until grep -q '\[Train\] ' "$dir/stdout" 2>/dev/null; do
        sleep 0.005
        if (( ${EPOCHREALTIME/[.,]/} > deadline )); then ok=0; break; fi
        alive=0
        while read -r p; do kill -0 "$p" 2>/dev/null && alive=1; done < "$dir/pids"
        if (( alive == 0 )); then grep -q '\[Train\] ' "$dir/stdout" || ok=0; break; fi
    done
    t1="$(now)"
    if (( ok == 0 )); then
        while read -r p; do kill -9 -- "-$p" 2>/dev/null || true; done < "$dir/pids"
    fi
    while read -r p; do wait "$p" || rc=$?; done < "$dir/pids"
    current=""
    dt="$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')"
    if (( ok == 0 || rc != 0 )); then
        echo "  $mode N=$n rep $rep: FAILED (step 1 seen: $ok, exit $rc; logs in $dir)" >&2
        status=1
        return
    fi
    local rdzv
    rdzv="$(grep -ho 'rendezvous complete in [0-9.]*s' "$dir"/stderr* 2>/dev/null | head -n 1 | grep -o '[0-9.]*s$' || true)"
    printf '%s\t%s\t%s\n' "$mode" "$n" "$dt" >> "$results"
    printf '  %-10s N=%s rep %s: %6.3f s to rank 0 step 1%s\n' "$mode" "$n" "$rep" "$dt" \
        "${rdzv:+ (init_process_group ${rdzv}, first rank to report)}"
}

echo "bench-gang: python $py, $cores cores, $reps repetitions, modes: single $modes, N: $worlds"
if [[ " $modes " == *" cluster "* ]]; then cluster_start; fi
for (( rep = 1; rep <= reps; rep++ )); do
    run_once single 1 "$rep"
    for n in $worlds; do
        for mode in $modes; do
            if [[ "$mode" == cluster ]]; then run_cluster "$n" "$rep"; else run_once "$mode" "$n" "$rep"; fi
        done
    done
done
cluster_stop

"$py" - "$results" "$modes" "$worlds" <<'EOF'
import json, statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
modes, worlds = sys.argv[2].split(), [int(n) for n in sys.argv[3].split()]
times = {}
for mode, n, dt in rows:
    times.setdefault((mode, int(n)), []).append(float(dt))
def med(k):
    return statistics.median(times[k]) if k in times else None
single = med(("single", 1))
out = {"single_process_s": single, "gangs": {}}
print()
print(f"{'mode':<11}{'N':>2} {'median':>8} {'min':>7} {'max':>7} {'-single':>8} {'/direct':>8}")
if single is not None:
    t = times[("single", 1)]
    print(f"{'single':<11}{1:>2} {single:8.3f} {min(t):7.3f} {max(t):7.3f}")
for n in worlds:
    direct = med(("direct", n))
    for mode in modes:
        k = (mode, n)
        if k not in times:
            continue
        m, t = med(k), times[k]
        over = m - single if single is not None else None
        ratio = m / direct if direct else None
        print(f"{mode:<11}{n:>2} {m:8.3f} {min(t):7.3f} {max(t):7.3f} "
              f"{over if over is not None else float('nan'):8.3f} {ratio if ratio is not None else float('nan'):8.2f}")
        out["gangs"].setdefault(str(n), {})[mode] = {
            "median_s": round(m, 3), "min_s": round(min(t), 3), "max_s": round(max(t), 3), "runs": len(t),
            "overhead_vs_single_s": round(over, 3) if over is not None else None,
            "ratio_to_direct": round(ratio, 3) if ratio is not None else None}
print("JSON " + json.dumps(out))
EOF
exit "$status"
