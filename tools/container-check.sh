#!/usr/bin/env bash
# Build the production image (Dockerfile) with podman from a LOCAL base image and run it for real:
# a scheduler and two workers on loopback to the end of a small study, with a SIGTERM drain and a
# resume from the journal in the middle and a third worker stopped mid-study; then `ash tune` in
# the image. Needs root; installs podman, buildah, debootstrap and runc from Debian if missing.
# Exits 0 when all is well; leaves no container, volume or network behind (images stay).
#
#   bash tools/container-check.sh [all|base|build|run|manifests|compose]    (default: all)
#
# manifests: compose.yaml against the compose-spec schema, deploy/k8s (kustomize-rendered) against
# the Kubernetes API schemas (kubernetes-validate, strict). compose: compose.yaml itself with
# podman-compose (from PyPI) and --scale worker=3, on a podman bridge network of this machine.
#
# The base image (localhost/ash-base:bookworm) is a minimal Debian bookworm made with debootstrap
# from the Debian mirror, with python3 (3.11), python3-venv, python3-pip and libgomp1: no image
# registry is needed. It is made once and reused (ASH_REBUILD_BASE=1 makes it again).
# Environment: ASH_BASE_IMAGE, ASH_IMAGE, ASH_DEBIAN_MIRROR, ASH_CHECK_TRIALS (default 150),
# ASH_CHECK_TIMEOUT (seconds for the study, default 900), ASH_BUILD_ARGS (more podman build args),
# ASH_CONTEXT (build context, default: this checkout), ASH_CHECK_TOOLS (the validators' venv,
# kept between runs; default /var/cache/ash-check/venv-1).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
phase=${1:-all}
base_image=${ASH_BASE_IMAGE:-localhost/ash-base:bookworm}
image=${ASH_IMAGE:-localhost/ash:check}
mirror=${ASH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
trials=${ASH_CHECK_TRIALS:-150}
study_timeout=${ASH_CHECK_TIMEOUT:-900}
context=${ASH_CONTEXT:-$repo}
tag=ash-check-$$
work=$(mktemp -d /var/tmp/ash-check.XXXXXX)
started=$SECONDS

say() { printf '[container-check %4ds] %s\n' "$((SECONDS - started))" "$*"; }
fail() { say "FAIL: $*"; exit 1; }

containers=()
volume=""
cleanup() {
  local rc=$?
  if ((${#containers[@]})); then
    if ((rc != 0)); then
      for c in "${containers[@]}"; do
        echo "----- podman logs $c (last 40 lines)"
        timeout 20 podman logs "$c" 2>&1 | grep -v 'level=error' | tail -40 || true
      done
    fi
    timeout 120 podman rm -f -v -t 5 "${containers[@]}" >/dev/null 2>&1 || true
  fi
  [[ -n $volume ]] && { timeout 60 podman volume rm -f "$volume" >/dev/null 2>&1 || true; }
  compose_down
  rm -rf "$work"
  ((rc == 0)) || say "failed (exit $rc)"
  say "cleaned up"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) == 0 ]] || fail "run as root (podman build with --isolation=chroot, debootstrap)"

ensure_tools() {
  local missing=()
  for t in podman buildah debootstrap runc; do command -v "$t" >/dev/null || missing+=("$t"); done
  if ((${#missing[@]})); then
    say "installing ${missing[*]} from Debian"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

make_base() {
  if [[ ${ASH_REBUILD_BASE:-0} != 1 ]] && podman image exists "$base_image"; then
    say "base image $base_image exists (ASH_REBUILD_BASE=1 to make it again)"
    return
  fi
  local t0=$SECONDS root=$work/rootfs
  say "debootstrap bookworm from $mirror"
  timeout 1200 debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,libgomp1,ca-certificates \
    bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -30 "$work/debootstrap.log"; fail "debootstrap"; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*
  say "podman import as $base_image"
  tar --numeric-owner -C "$root" -c . | timeout 600 podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$base_image" >/dev/null
  rm -rf "$root"
  say "base image made in $((SECONDS - t0)) s: $(podman image inspect --format '{{.Size}}' "$base_image" | numfmt --to=si) "
}

# Containers run with runc (crun refuses the hybrid cgroup v1/v2 layout of some VMs, this one's
# among them) and with explicit rlimits (the defaults podman asks for can exceed what the host
# grants: "setrlimit RLIMIT_NOFILE: Operation not permitted"). The HEALTHCHECK is run on demand
# with `podman healthcheck run`, not by a systemd timer (there may be no systemd).
run_opts=(--runtime runc --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096
  --health-interval=disable)
prun() { podman run "${run_opts[@]}" "$@"; }

# How pip reaches its index on this machine, passed on to the build: index URLs (http[s] only: a
# file:// index of the host is not in the build) as build args, the CA bundle as a build secret.
pip_build_args=()
pip_settings() {
  local py=python3 v ca=""
  for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT; do
    local val=${!v:-}
    if [[ -z $val && $v != PIP_DEFAULT_TIMEOUT ]]; then
      local key=${v#PIP_}; key=${key,,}; key=${key//_/-}
      val=$($py -m pip config get "global.$key" 2>/dev/null | tr '\n' ' ' || true)
    fi
    if [[ $v == *URL ]]; then
      val=$(tr ' ' '\n' <<<"$val" | grep -E '^https?://' | tr '\n' ' ' | sed 's/ *$//' || true)
    fi
    [[ -n $val ]] && pip_build_args+=(--build-arg "$v=$val")
  done
  for ca in "${PIP_CERT:-}" "$($py -m pip config get global.cert 2>/dev/null || true)" \
            "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    [[ -n $ca && -s $ca ]] && break
    ca=""
  done
  [[ -n $ca ]] && pip_build_args+=(--secret "id=pip_cert,src=$ca")
  say "pip settings for the build: ${pip_build_args[*]:-(none)}"
}

build_image() {
  pip_settings
  local t0=$SECONDS
  say "podman build --isolation=chroot --build-arg BASE=$base_image -t $image $context"
  # shellcheck disable=SC2086
  timeout 1800 podman build --isolation=chroot --format docker --network host \
    --build-arg "BASE=$base_image" "${pip_build_args[@]}" ${ASH_BUILD_ARGS:-} \
    -f "$repo/Dockerfile" -t "$image" "$context" >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; fail "podman build"; }
  build_s=$((SECONDS - t0))
  image_size=$(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=si)
  say "built $image in $build_s s, $image_size"
  # the image: non-root, no compiler, the kernel imports with OpenMP, the three commands answer
  [[ $(prun --rm --network none "$image" id -u) == 10001 ]] || fail "image user is not 10001"
  prun --rm --network none "$image" sh -c '! command -v gcc && ! command -v cc' >/dev/null \
    || fail "a compiler is in the runtime image"
  prun --rm --network none "$image" python -c \
    'import ash.native._kernel, ash.scheduler.server, ash.worker.daemon
assert "libgomp" in open("/proc/self/maps").read(), "the kernel is not linked with OpenMP"' \
    || fail "ash does not import in the image, or without OpenMP"
  for cmd in "ash --version" "ash-scheduler --help" "ash-worker --help"; do
    # shellcheck disable=SC2086
    prun --rm --network none "$image" $cmd >/dev/null || fail "$cmd"
  done
}

# validators and podman-compose from PyPI, in a venv kept between runs (kubernetes-validate ships
# the schemas of every Kubernetes release: slow to install, slow to delete)
tools=${ASH_CHECK_TOOLS:-/var/cache/ash-check/venv-1}
tools_venv() {
  [[ -x $tools/bin/podman-compose ]] && return
  rm -rf "$tools"
  python3 -m venv "$tools"
  timeout 600 "$tools/bin/pip" install -q kubernetes-validate==1.37.0 \
    check-jsonschema==0.39.0 podman-compose==1.6.0 2>&1 | grep -v "^WARNING: Location" || true
  [[ -x $tools/bin/podman-compose ]] || { rm -rf "$tools"; fail "could not install the validators"; }
}

check_manifests() {
  tools_venv
  local rendered=$work/k8s.yaml f
  if command -v kubectl >/dev/null; then
    kubectl kustomize deploy/k8s >"$rendered" || fail "kubectl kustomize deploy/k8s"
  else
    for f in deploy/k8s/*.yaml; do
      [[ $f == */kustomization.yaml ]] || { cat "$f"; echo "---"; }
    done >"$rendered"
  fi
  for v in 1.27.0 1.37.0; do
    "$tools/bin/kubernetes-validate" --strict --quiet -k "$v" "$rendered" \
      || fail "deploy/k8s against Kubernetes $v"
  done
  "$tools/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml >/dev/null \
    || fail "compose.yaml against the compose-spec schema"
  say "manifests: deploy/k8s valid for Kubernetes 1.27 and 1.37 (strict), compose.yaml valid"
}

compose_project=""
compose_down() {
  [[ -n $compose_project ]] || return 0
  local ids
  ids=$(podman ps -aq --filter "label=io.podman.compose.project=$compose_project")
  # shellcheck disable=SC2086
  [[ -z $ids ]] || timeout 120 podman rm -f -v -t 5 $ids >/dev/null 2>&1 || true
  timeout 120 "$tools/bin/podman-compose" -p "$compose_project" down -v >/dev/null 2>&1 || true
  timeout 60 podman volume rm -f "${compose_project}_ash-data" >/dev/null 2>&1 || true
  timeout 60 podman network rm -f "${compose_project}_default" >/dev/null 2>&1 || true
  compose_project=""
}

run_compose() {
  tools_venv
  local t0=$SECONDS spec=$work/compose-study.toml token=$work/compose-token conf=$work/containers.conf
  sed -E "s/^max_trials *=.*/max_trials = $trials/" "$repo/examples/iris.toml" >"$spec"
  python3 -c 'import secrets; print(secrets.token_hex(32))' >"$token"
  chmod 0644 "$token"
  # podman-compose cannot pass run_opts: the same settings through a containers.conf
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n' \
    "$(ulimit -Hn)" "$(ulimit -Hn)" >"$conf"
  compose_project=$tag-compose
  say "podman-compose up --scale worker=3 (project $compose_project, image $image)"
  CONTAINERS_CONF=$conf ASH_IMAGE=$image ASH_STUDY=$spec ASH_TOKEN_FILE=$token ASH_PORT=$(free_port) \
    timeout "$study_timeout" "$tools/bin/podman-compose" -p "$compose_project" \
    -f "$repo/compose.yaml" up --no-build --scale worker=3 >"$work/compose.log" 2>&1 \
    || { tail -30 "$work/compose.log"; fail "podman-compose up"; }
  local bad
  bad=$(podman ps -a --filter "label=io.podman.compose.project=$compose_project" \
    --format '{{.Names}} {{.ExitCode}}' | awk '$2 != 0' || true)
  [[ -z $bad ]] || { tail -30 "$work/compose.log"; fail "compose containers failed: $bad"; }
  local n
  n=$(podman ps -a --filter "label=io.podman.compose.project=$compose_project" \
    --filter label=com.docker.compose.service=worker -q | wc -l)
  ((n == 3)) || fail "expected 3 worker containers, found $n"
  python3 - "$(podman volume inspect --format '{{.Mountpoint}}' "${compose_project}_ash-data")" \
    "$trials" <<'PY' || fail "compose results.json"
import json, sys
data, trials = sys.argv[1], int(sys.argv[2])
doc = json.load(open(f"{data}/out/results.json"))
assert len(doc["trials"]) == trials and not doc.get("interrupted"), len(doc["trials"])
workers = {json.loads(l).get("worker") for l in open(f"{data}/trace.jsonl") if '"assign"' in l}
assert len(workers) == 3, workers
print(f"  compose: {trials} trials on 3 scaled workers, best val_loss {doc['best']['value']:.4f}")
PY
  compose_s=$((SECONDS - t0))
  compose_down
  say "compose study finished in $compose_s s; all containers exited 0"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
state() { podman inspect --format '{{.State.Status}} {{.State.ExitCode}}' "$1"; }
exit_code() { podman inspect --format '{{.State.ExitCode}}' "$1"; }

wait_exit() {  # NAME SECONDS: wait for a container to exit, bounded
  timeout "$2" podman wait "$1" >/dev/null || fail "$1 still running after $2 s ($(state "$1"))"
}

count_results() {
  local n=0
  [[ -f $1 ]] && n=$(grep -c '"event": *"result"' "$1" || true)
  echo "${n:-0}"
}

run_study() {
  local t0=$SECONDS port spec=$work/study token=$work/token data
  port=$(free_port)
  mkdir -p "$spec"
  sed -E "s/^max_trials *=.*/max_trials = $trials/" "$repo/examples/iris.toml" >"$spec/iris.toml"
  grep -q "^max_trials = $trials\$" "$spec/iris.toml" || fail "could not set max_trials"
  python3 -c 'import secrets; print(secrets.token_hex(32))' >"$token"
  chmod 0644 "$token"   # read by the image's user (uid 10001)
  volume=$tag-data
  podman volume create "$volume" >/dev/null
  data=$(podman volume inspect --format '{{.Mountpoint}}' "$volume")
  local common=(--network host --read-only -v "$spec:/study:ro" -v "$token:/run/secrets/ash_token:ro")
  local sched_args=(ash-scheduler /study/iris.toml --listen "127.0.0.1:$port"
    --journal /data/journal.jsonl --out /data/out --trace /data/trace.jsonl
    --token-file /run/secrets/ash_token)
  local worker_args=(ash-worker --scheduler "127.0.0.1:$port" --slots 1 --threads 1
    --token-file /run/secrets/ash_token)

  say "scheduler on 127.0.0.1:$port (max_trials = $trials), journal on volume $volume"
  containers+=("$tag-sched")
  prun -d --name "$tag-sched" "${common[@]}" -v "$volume:/data" "$image" \
    "${sched_args[@]}" >/dev/null
  local healthy=0
  for _ in $(seq 60); do
    if podman healthcheck run "$tag-sched" >/dev/null 2>&1; then healthy=1; break; fi
    sleep 1
  done
  ((healthy)) || fail "scheduler not healthy within 60 s ($(state "$tag-sched"))"
  say "scheduler healthy (HEALTHCHECK: gRPC health through the image's ash-healthcheck)"

  for w in w1 w2 w3; do
    containers+=("$tag-$w")
    prun -d --name "$tag-$w" "${common[@]}" "$image" "${worker_args[@]}" --id "$w" \
      >/dev/null
  done
  podman healthcheck run "$tag-w1" >/dev/null 2>&1 || fail "worker container not healthy"

  # once w3 has a job and 10% of the study is done: SIGTERM worker w3 (hands back its jobs, exits
  # 0), and SIGTERM the scheduler (drains, writes what is done, exits 0); then a new scheduler on
  # the same journal, which the workers find again by themselves
  local n=0 deadline=$((SECONDS + study_timeout))
  while n=$(count_results "$data/trace.jsonl"); ((n < trials / 10)) \
        || ! grep -q '"worker": *"w3"' "$data/trace.jsonl"; do
    ((SECONDS < deadline)) || fail "only $n results after $study_timeout s"
    [[ $(state "$tag-sched") == running* ]] \
      || fail "scheduler exited before the SIGTERM test ($(state "$tag-sched")): more trials?"
    sleep 0.2
  done
  say "$n results: podman stop (SIGTERM) worker w3"
  timeout 120 podman stop -t 60 "$tag-w3" >/dev/null
  [[ $(exit_code "$tag-w3") == 0 ]] || fail "worker w3 exited $(exit_code "$tag-w3") on SIGTERM"
  say "w3 exited 0; podman stop (SIGTERM) the scheduler"
  local t_stop=$SECONDS
  timeout 150 podman stop -t 120 "$tag-sched" >/dev/null
  [[ $(exit_code "$tag-sched") == 0 ]] \
    || fail "scheduler exited $(exit_code "$tag-sched") on SIGTERM"
  python3 - "$data/out/results.json" <<'PY' || fail "results.json after SIGTERM"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc.get("interrupted") is True, doc.get("interrupted")
print(f"  interrupted results.json: {len(doc['trials'])} trials so far")
PY
  say "scheduler drained and exited 0 in $((SECONDS - t_stop)) s; starting it again on the journal"
  containers+=("$tag-sched2")
  prun -d --name "$tag-sched2" "${common[@]}" -v "$volume:/data" "$image" \
    "${sched_args[@]}" >/dev/null

  wait_exit "$tag-sched2" $((deadline - SECONDS > 60 ? deadline - SECONDS : 60))
  [[ $(exit_code "$tag-sched2") == 0 ]] || fail "scheduler exited $(exit_code "$tag-sched2")"
  for w in w1 w2; do
    wait_exit "$tag-$w" 120
    [[ $(exit_code "$tag-$w") == 0 ]] || fail "worker $w exited $(exit_code "$tag-$w")"
  done
  local logs
  logs=$(podman logs "$tag-sched2" 2>&1 || true)
  [[ $logs == *"ash-scheduler: resumed"* ]] || fail "the second scheduler did not say it resumed"
  study_s=$((SECONDS - t0))
  python3 - "$data" "$trials" <<'PY' || fail "results.json"
import json, math, sys
data, trials = sys.argv[1], int(sys.argv[2])
doc = json.load(open(f"{data}/out/results.json"))
assert not doc.get("interrupted"), "interrupted"
assert len(doc["trials"]) == trials, (len(doc["trials"]), trials)
best = doc["best"]
assert best and math.isfinite(best["value"]), best
events = [json.loads(l) for l in open(f"{data}/trace.jsonl")]
workers = sorted({e["worker"] for e in events if e["event"] == "assign"})
# one trace across both schedulers: a resumed study keeps its clock and its trials
assert all(a["t"] <= b["t"] for a, b in zip(events, events[1:])), "trace time went back"
first = [e for e in events if e["event"] == "assign" and e["trial"] == 0 and e["rung"] == 0]
assert len(first) == 1, f"trial 0 started {len(first)} times: the study started over"
results = [e for e in events if e["event"] == "result"]
lost = sum(e["event"] == "lost" for e in events)
print(f"  {len(doc['trials'])} trials, {len(results)} results, {lost} lost (re-issued), "
      f"workers {workers}; best trial {best['trial']} val_loss {best['value']:.4f} "
      f"at resource {best['resource']}")
PY
  say "study finished in $study_s s; all containers exited 0"

  say "ash tune in the image (2 local workers)"
  containers+=("$tag-tune")
  timeout 600 podman run "${run_opts[@]}" --name "$tag-tune" --network none -v "$spec:/study:ro" \
    -v "$volume:/data" "$image" ash tune /study/iris.toml --workers 2 --out /data/tune --quiet \
    || fail "ash tune exited $?"
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["best"]; print("  ash tune best", d["best"]["value"])' \
    "$data/tune/results.json" || fail "ash tune results.json"
}

case $phase in
  all | base | build | run | manifests | compose) ;;
  *) fail "usage: $0 [all|base|build|run|manifests|compose]" ;;
esac
build_s=- image_size=- study_s=- compose_s=-
ensure_tools
[[ $phase == all || $phase == base ]] && make_base
[[ $phase == all || $phase == build ]] && build_image
[[ $phase == all || $phase == manifests ]] && check_manifests
[[ $phase == all || $phase == run ]] && run_study
[[ $phase == all || $phase == compose ]] && run_compose
say "ok: build ${build_s} s, image ${image_size}, study ${study_s} s, compose ${compose_s} s," \
  "total $((SECONDS - started)) s"
