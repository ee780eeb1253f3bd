#!/usr/bin/env bash
# A throw-away single-node Slurm (munged + slurmctld + slurmd) on localhost, for testing
# the job scripts. Source it, then:
#   slurm_harness_up DIR     writes DIR/slurm.conf from slurm.conf.in, starts the daemons,
#                            exports SLURM_CONF, waits until the node is idle
#   slurm_harness_down       cancels every job, stops the daemons by process id, kills what
#                            is left of the jobs (processes carrying this harness's marker)
# Needs Debian's slurm-wlm and munge (slurm_harness_install installs them as root).
# Ports: SLURM_TEST_PORT (default 26817) and +1, moved on by 10 while taken; they stay
# clear of shared tools' 16817-16819.

SLURM_HARNESS_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SLURM_HARNESS_PIDS=()
SLURM_TEST_DIR=${SLURM_TEST_DIR:-}

slurm_harness_have() {
  command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 &&
    command -v sbatch >/dev/null 2>&1 && command -v munged >/dev/null 2>&1
}

# Installs slurm-wlm and munge with apt when root; returns 1 when that is impossible.
slurm_harness_install() {
  slurm_harness_have && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  echo "slurm harness: installing slurm-wlm munge" >&2
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the packages' own services from starting (no systemd here anyway).
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null || return 1
  slurm_harness_have
}

_slurm_port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

slurm_harness_up() {
  local d=$1
  mkdir -p "$d"/{munge,state,spool,log}
  chmod 755 "$d" "$d/munge"   # munged wants a world-searchable socket directory
  SLURM_TEST_DIR=$(cd "$d" && pwd)
  d=$SLURM_TEST_DIR
  # Marker inherited by the daemons, slurmstepd and every job process: lets the clean-up
  # find what the jobs left behind without matching anyone else's processes.
  export LATDIFF_SLURM_TEST_DIR=$d
  local port=${SLURM_TEST_PORT:-26817} i
  for i in $(seq 20); do
    _slurm_port_taken "$port" || _slurm_port_taken $((port + 1)) || break
    port=$((port + 10))
  done
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc); [ "$cpus" -lt 2 ] && cpus=2   # config_overrides: 2 slots even on 1 core
  mem=$(($(awk '/^MemTotal:/{print int($2/1024)}' /proc/meminfo) / 2))
  sed -e "s|@HOST@|$host|g" -e "s|@USER@|$(id -un)|g" -e "s|@DIR@|$d|g" \
    -e "s|@CTLD_PORT@|$port|g" -e "s|@SLURMD_PORT@|$((port + 1))|g" \
    -e "s|@CPUS@|$cpus|g" -e "s|@MEM@|$mem|g" "$SLURM_HARNESS_SRC/slurm.conf.in" >"$d/slurm.conf"
  export SLURM_CONF=$d/slurm.conf
  # Client commands must not pick up a surrounding allocation's variables.
  unset SLURM_JOB_ID SLURM_JOBID SLURM_NTASKS SLURM_NPROCS SLURM_NODELIST SLURM_JOB_NODELIST

  if command -v mungekey >/dev/null 2>&1; then
    mungekey --create --keyfile="$d/munge/munge.key" --force
  else
    dd if=/dev/urandom of="$d/munge/munge.key" bs=1024 count=1 2>/dev/null
  fi
  chmod 600 "$d/munge/munge.key"
  munged -F --force --key-file="$d/munge/munge.key" --socket="$d/munge/munge.socket.2" \
    --pid-file="$d/munge/munged.pid" --log-file="$d/log/munged.log" \
    --seed-file="$d/munge/munged.seed" >"$d/log/munged.out" 2>&1 &
  SLURM_HARNESS_PIDS+=($!)
  for i in $(seq 100); do [ -S "$d/munge/munge.socket.2" ] && break; sleep 0.1; done
  if [ ! -S "$d/munge/munge.socket.2" ]; then
    echo "slurm harness: munged did not start" >&2; tail -n 5 "$d"/log/munged.* >&2; return 1
  fi
  slurmctld -D -c -f "$SLURM_CONF" >"$d/log/slurmctld.out" 2>&1 &
  SLURM_HARNESS_PIDS+=($!)
  slurmd -D -f "$SLURM_CONF" >"$d/log/slurmd.out" 2>&1 &
  SLURM_HARNESS_PIDS+=($!)
  printf '%s\n' "${SLURM_HARNESS_PIDS[@]}" >"$d/pids"
  for i in $(seq 300); do
    [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && {
      echo "slurm harness: up in $d (ports $port, $((port + 1)); $cpus cpus)" >&2
      return 0
    }
    sleep 0.1
  done
  echo "slurm harness: node never became idle" >&2
  tail -n 20 "$d"/log/*.out "$d"/log/*.log >&2 2>/dev/null
  return 1
}

# Processes (other than this shell) that carry the marker of this harness.
_slurm_marked_pids() {
  local f pid
  for f in /proc/[0-9]*; do
    pid=${f#/proc/}
    [ "$pid" = "$$" ] && continue
    [ "$pid" = "${BASHPID:-$$}" ] && continue
    # Zombies are gone for our purpose (their environ reads empty anyway).
    case $(cut -d ' ' -f 3 "$f/stat" 2>/dev/null) in Z | X | '') continue ;; esac
    if tr '\0' '\n' 2>/dev/null <"$f/environ" | grep -qx "LATDIFF_SLURM_TEST_DIR=$SLURM_TEST_DIR"; then
      echo "$pid"
    fi
  done
}

slurm_harness_down() {
  [ -n "$SLURM_TEST_DIR" ] || return 0
  local i p left sig
  if [ ${#SLURM_HARNESS_PIDS[@]} -gt 0 ] && [ -n "${SLURM_CONF:-}" ]; then
    scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
    for i in $(seq 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  # Daemons in reverse order of start-up, by the ids recorded when they were started.
  for ((i = ${#SLURM_HARNESS_PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${SLURM_HARNESS_PIDS[i]}" 2>/dev/null || true
  done
  for p in "${SLURM_HARNESS_PIDS[@]}"; do
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  SLURM_HARNESS_PIDS=()
  # slurmstepd and job processes outlive slurmd: find them by the marker.
  left=$(_slurm_marked_pids)
  for sig in TERM KILL; do
    [ -n "$left" ] || break
    kill -s "$sig" $left 2>/dev/null || true
    for i in $(seq 30); do
      left=$(_slurm_marked_pids)
      [ -n "$left" ] || break
      sleep 0.1
    done
  done
  [ -n "$left" ] && echo "slurm harness: still alive after clean-up: $left" >&2
  return 0
}
