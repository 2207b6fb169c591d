#!/usr/bin/env bash
# Serving throughput of ntpd-lite against chronyd -x on this machine, in the same run: each server
# in turn on a free 127.0.0.1 port as a local stratum-1 server without rate limiting, driven by
# ntp-load (closed loop, batched, every reply matched to its request), then its RSS read from
# /proc. Prints a table, the ratio ntpd-lite/chronyd and both RSS figures. Exits non-zero only if
# something failed to run, never for missing the goal (1.3x chronyd's rate, RSS <= chronyd's).
#
# The servers run one after the other, alternating in each round, so that both see alike whatever
# else the machine is doing. The table has, per run: requests sent, valid replies, lost (no reply
# in 200 ms), invalid/unmatched replies, valid/sent in %, valid replies per second, the server's
# CPU time per valid reply (user + system, from /proc/PID/stat: the figure least moved by other
# load), the generator's, the share of the machine's CPU that other processes and the hypervisor
# took meanwhile (bg%: above a few %, the rates are noisy) and of that the hypervisor's steal
# (st%), round-trip p50/p99, and the server's RSS idle, after the load, and at its peak (VmHWM).
#
# Settings (environment): BENCH_ROUNDS (5), BENCH_SECONDS (4, per server per round),
# BENCH_SOCKETS (4), BENCH_WINDOW (32), BENCH_THREADS (generator threads, 1), BENCH_WORKERS
# (ntpd-lite's `workers`; unset = its default), BENCH_LOAD_ARGS (more ntp-load flags, e.g. --no-gso),
# BENCH_SKIP_BUILD=1 to use the binaries as built. BENCH_NTS=1: NTS (RFC 8915) instead of plain
# NTP: both servers also run NTS-KE with a certificate of a CA made here (openssl), ntp-load
# takes keys and a cookie in one handshake and sends NTS requests (one cookie, no placeholders,
# as a client with a full pool), and after each load nts-ke-bench counts NTS-KE handshakes per
# second for BENCH_KE_SECONDS (3) with 2 client threads.
set -euo pipefail

seconds=${BENCH_SECONDS:-4}
rounds=${BENCH_ROUNDS:-5}
sockets=${BENCH_SOCKETS:-4}
window=${BENCH_WINDOW:-32}
threads=${BENCH_THREADS:-1}
workers=${BENCH_WORKERS:-}
read -r -a load_args <<<"${BENCH_LOAD_ARGS:-}"
nts=${BENCH_NTS:-}
ke_seconds=${BENCH_KE_SECONDS:-3}
keport=""

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release

for tool in chronyd jq ss; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install chrony jq iproute2)" >&2; exit 1; }
done

work=$(mktemp -d -t ntp-bench-XXXXXX)
chmod 700 "$work"
server_pid=""
cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
    echo "building release binaries (cargo build --release -p ntpd-lite -p ntp-lite-tests --bins)"
    (cd "$root" && cargo build --release -p ntpd-lite -p ntp-lite-tests --bins) >"$work/build.log" 2>&1 ||
        { cat "$work/build.log" >&2; echo "build failed" >&2; exit 1; }
fi

# A UDP port nobody on 127.0.0.1 is bound to.
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if [[ -z $(ss -Hlun "sport = :$port") ]]; then
            echo "$port"
            return
        fi
    done
    echo "no free UDP port found" >&2
    return 1
}

# A TCP port nobody on 127.0.0.1 listens on.
free_tcp_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if [[ -z $(ss -Hltn "sport = :$port") ]]; then
            echo "$port"
            return
        fi
    done
    echo "no free TCP port found" >&2
    return 1
}

# With BENCH_NTS: a CA and a certificate for 127.0.0.1 that both servers use.
if [[ -n $nts ]]; then
    command -v openssl >/dev/null || { echo "openssl is needed for BENCH_NTS" >&2; exit 1; }
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
        -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
        -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
    openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -days 2 \
        -extfile <(printf 'subjectAltName=IP:127.0.0.1\n') -out "$work/server.pem" 2>/dev/null
    chmod 600 "$work/server.key"
fi

# ntp-load against 127.0.0.1:$1 with extra arguments; prints its JSON report.
load() {
    local port=$1
    shift
    local nts_args=()
    if [[ -n $nts ]]; then nts_args=(--nts-ke "127.0.0.1:$keport" --nts-ca "$work/ca.pem"); fi
    "$bin/ntp-load" --server "127.0.0.1:$port" --json "${nts_args[@]}" "$@"
}

# Waits until the server on $1 gives valid replies (at most ~10 probes).
wait_serving() {
    local port=$1 name=$2
    for _ in $(seq 10); do
        kill -0 "$server_pid" 2>/dev/null || { echo "$name exited; log:" >&2; cat "$work/$name.log" >&2; return 1; }
        if load "$port" --seconds 1 --sockets 1 --window 1 --warmup-ms 0 >/dev/null 2>&1; then
            return
        fi
    done
    echo "$name does not answer on 127.0.0.1:$port; log:" >&2
    cat "$work/$name.log" >&2
    return 1
}

field() { jq -r ".$2" <<<"$1"; }
status_kb() {
    awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status" 2>/dev/null ||
        { echo "the server (pid $1) is gone; logs:" >&2; cat "$work"/*.log >&2; return 1; }
}
# User + system CPU time of process $1 in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Busy, total and stolen clock ticks of the whole machine (/proc/stat; idle and iowait are not
# busy; steal, time the hypervisor gave to other guests, is).
machine_ticks() { awk '$1 == "cpu" { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t, $9 }' /proc/stat; }

# Runs the load against the server just started as $server_pid on port $1, stops the server,
# prints one table row and appends "rate peak_rss_kb cpu_us_per_reply bg%" to $work/$2.results.
measure() {
    local port=$1 name=$2 round=$3 report
    wait_serving "$port" "$name"
    local idle_kb cpu0 cpu1 rss_kb hwm_kb
    idle_kb=$(status_kb "$server_pid" VmRSS)
    cpu0=$(cpu_ticks "$server_pid")
    local machine0 machine1
    machine0=$(machine_ticks)
    # No warm-up: the server has just answered the probe, and the CPU time below then covers
    # exactly the replies counted.
    report=$(load "$port" --seconds "$seconds" --sockets "$sockets" --window "$window" \
        --threads "$threads" --warmup-ms 0 "${load_args[@]}")
    cpu1=$(cpu_ticks "$server_pid")
    machine1=$(machine_ticks)
    rss_kb=$(status_kb "$server_pid" VmRSS)
    hwm_kb=$(status_kb "$server_pid" VmHWM)
    local ke_rate=-
    if [[ -n $nts ]]; then
        ke_rate=$(field "$("$bin/nts-ke-bench" --server "127.0.0.1:$keport" --ca "$work/ca.pem" \
            --seconds "$ke_seconds")" per_second)
        echo "$ke_rate" >>"$work/$name.ke"
    fi
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    local sent valid rate
    sent=$(field "$report" sent)
    valid=$(field "$report" valid)
    rate=$(printf %.0f "$(field "$report" replies_per_second)")
    # Server and generator CPU time per valid reply, microseconds, and the share of the machine
    # that neither used (other processes and the hypervisor: the background that makes rates
    # noisy), with the hypervisor's part of it.
    local hz us_per_reply gen_us background
    hz=$(getconf CLK_TCK)
    us_per_reply=$(awk -v t="$((cpu1 - cpu0))" -v hz="$hz" -v v="$valid" \
        'BEGIN { printf "%.2f", v ? 1e6 * t / hz / v : 0 }')
    gen_us=$(awk -v c="$(field "$report" cpu_seconds)" -v v="$valid" 'BEGIN { printf "%.2f", v ? 1e6 * c / v : 0 }')
    background=$(awk -v m0="$machine0" -v m1="$machine1" -v s="$((cpu1 - cpu0))" \
        -v g="$(field "$report" cpu_seconds)" -v hz="$hz" 'BEGIN {
            split(m0, a, " "); split(m1, b, " ")
            other = (b[1] - a[1]) - s - g * hz
            total = b[2] - a[2]
            busy = (total > 0 && other > 0) ? 100 * other / total : 0
            stolen = (total > 0) ? 100 * (b[3] - a[3]) / total : 0
            printf "%.0f %.0f", busy, stolen
        }')
    local steal=${background#* }
    background=${background% *}
    printf "$row" "$name" "$round" "$sent" "$valid" "$(field "$report" lost)" \
        "$(field "$report" invalid)/$(field "$report" unmatched)" \
        "$(awk -v v="$valid" -v s="$sent" 'BEGIN { printf "%.2f", s ? 100 * v / s : 0 }')" \
        "$rate" "$us_per_reply" "$gen_us" "$background" "$steal" "$(field "$report" p50_us)" "$(field "$report" p99_us)" \
        "$idle_kb" "$rss_kb" "$hwm_kb" "$ke_rate"
    echo "$rate $hwm_kb $us_per_reply $background" >>"$work/$name.results"
    if ((valid < sent * 999 / 1000)); then
        echo "note: $name answered fewer than 99.9% of the requests sent (lost $(field "$report" lost))" >&2
    fi
}

start_ntpd_lite() {
    local port=$1
    {
        printf '[server]\nlisten = ["127.0.0.1:%s"]\n' "$port"
        if [[ -n $workers ]]; then printf 'workers = %s\n' "$workers"; fi
        printf '[local]\nstratum = 1\n[clock]\nmode = "monitor"\n'
        if [[ -n $nts ]]; then
            printf '[nts-ke-server]\nlisten = ["127.0.0.1:%s"]\ncertificate = "%s"\nprivate-key = "%s"\n' \
                "$keport" "$work/server.pem" "$work/server.key"
        fi
    } >"$work/ntpd-lite.toml"
    "$bin/ntpd-lite" --config "$work/ntpd-lite.toml" --log-level warn >"$work/ntpd-lite.log" 2>&1 &
    server_pid=$!
}

start_chronyd() {
    local port=$1
    # No `ratelimit` directive: chrony's rate limiting is off unless asked for.
    cat >"$work/chrony.conf" <<EOF
port $port
bindaddress 127.0.0.1
local stratum 1
allow 127.0.0.1
cmdport 0
pidfile $work/chronyd.pid
EOF
    if [[ -n $nts ]]; then
        printf 'ntsserverkey %s\nntsservercert %s\nntsport %s\nntsdumpdir %s\n' \
            "$work/server.key" "$work/server.pem" "$keport" "$work" >>"$work/chrony.conf"
    fi
    # -x: never touch the clock. -d: foreground. -u root: no privilege drop (temp dir access).
    chronyd -x -d -u root -f "$work/chrony.conf" >"$work/chronyd.log" 2>&1 &
    server_pid=$!
}

row='%-9s %2s %9s %9s %5s %7s %6s %8s %5s %5s %4s %4s %6s %6s %7s %7s %7s %6s\n'
echo "ntp-load: ${rounds} rounds of ${seconds} s per server, $sockets sockets x window $window, $threads thread(s)${nts:+, NTS}"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"
printf "$row" server rnd sent valid lost inv/unm 'ok%' 'replies/s' 'cpuus' genus 'bg%' 'st%' 'p50us' 'p99us' idleKB rssKB peakKB 'ke/s'
for round in $(seq "$rounds"); do
    # Alternate who goes first, so that a change in background load hits both alike.
    order=(ntpd_lite chronyd)
    ((round % 2 == 0)) && order=(chronyd ntpd_lite)
    for name in "${order[@]}"; do
        port=$(free_port)
        keport=$(free_tcp_port)
        if [[ $name == ntpd_lite ]]; then start_ntpd_lite "$port"; else start_chronyd "$port"; fi
        measure "$port" "$name" "$round"
    done
done

# Medians of rate and CPU per reply, and the largest peak RSS, of each server over the rounds.
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
column_median() { cut -d' ' -f"$2" "$work/$1.results" | median; }
peak() { cut -d' ' -f2 "$work/$1.results" | sort -n | tail -1; }
awk -v a="$(column_median ntpd_lite 1)" -v b="$(column_median chronyd 1)" \
    -v ca="$(column_median ntpd_lite 3)" -v cb="$(column_median chronyd 3)" \
    -v ra="$(peak ntpd_lite)" -v rb="$(peak chronyd)" 'BEGIN {
    printf "median replies/s:     ntpd-lite %.0f, chronyd %.0f, ratio %.2fx (goal >= 1.30x)\n", a, b, b ? a / b : 0
    printf "median CPU per reply: ntpd-lite %.2f us, chronyd %.2f us, chronyd/ntpd-lite %.2fx\n", ca, cb, ca ? cb / ca : 0
    printf "peak RSS:             ntpd-lite %d kB, chronyd %d kB (goal: ntpd-lite <= chronyd)\n", ra, rb
}'
if [[ -n $nts ]]; then
    echo "median NTS-KE handshakes/s: ntpd-lite $(median <"$work/ntpd_lite.ke"), chronyd $(median <"$work/chronyd.ke")"
fi
# The two runs of a round are back to back, so their ratio is the least moved by load that comes
# and goes; rounds in which other processes took at most 5% of the machine in both runs are the
# ones to trust.
paste -d' ' "$work/ntpd_lite.results" "$work/chronyd.results" >"$work/rounds"
ratios=$(awk '{ printf "%.2f\n", $5 ? $1 / $5 : 0 }' "$work/rounds")
quiet=$(awk '$4 <= 5 && $8 <= 5 { printf "%.2f\n", $5 ? $1 / $5 : 0 }' "$work/rounds")
echo "per-round ratios:     $(echo $ratios), median $(median <<<"$ratios" | xargs printf %.2f)x"
if [[ -n $quiet ]]; then
    echo "quiet rounds (bg <= 5% in both runs): $(echo $quiet), median $(median <<<"$quiet" | xargs printf %.2f)x"
else
    echo "quiet rounds (bg <= 5% in both runs): none; the machine was busy, rates are noisy"
fi
