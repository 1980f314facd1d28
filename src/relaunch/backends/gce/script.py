"""The VM's start-up script, generated in one place.

The script itself is constant text: everything that varies (run id, attempt, image,
the command, its environment, the GPU count and timeout, where the store is) comes
from instance metadata, read at boot with the metadata server, so nothing a user
wrote is ever interpolated into shell. The command and the environment travel
base64-encoded, NUL-separated, and become ``docker run`` arguments one by one.

What it does on Container-Optimized OS (the seeds' notes C to F):

1. ``cos-extensions install gpu`` — COS ignores the ``install-nvidia-driver`` metadata;
2. waits for ``nvidia-smi`` to list the GPUs, up to the GPU start-up timeout;
3. gets Artifact Registry credentials from the VM's service account
   (``docker-credential-gcr``) and pulls the image;
4. runs the container with the driver mounted (``/var/lib/nvidia/lib64`` and
   ``/var/lib/nvidia/bin``, the ``/dev/nvidia*`` devices, ``LD_LIBRARY_PATH``): neither
   ``--gpus all`` nor ``--runtime=nvidia`` works on COS (exit 125);
5. powers the VM off when the container is done.

Each phase is written to the store as an event (``kind: boot``) before the container
exists, so ``relaunch status`` says where a VM is stuck; a failure writes the
attempt's result (reason + what to do) and a ``not-started`` heartbeat, so the agent
classifies it at once instead of waiting for ``startup_timeout``.
"""

from __future__ import annotations

import base64

#: metadata keys the script reads (``instance/attributes/<key>``)
KEYS = (
    "relaunch-run-id",
    "relaunch-attempt",
    "relaunch-image",
    "relaunch-argv",
    "relaunch-env",
    "relaunch-gpus",
    "relaunch-gpu-timeout",
    "relaunch-store-upload",
    "relaunch-live-upload",
    "relaunch-registry",
    "relaunch-stop-timeout",
)

#: the phases reported before the container exists, in order
PHASES = ("driver-installing", "driver-ready", "image-pulling", "container-starting")

# The role a VM's service account needs to pull from Artifact Registry.
READER_ROLE = "roles/artifactregistry.reader"

STARTUP_SCRIPT = r"""#!/bin/bash
# relaunch start-up script. Generated; every input comes from instance metadata.
set -uo pipefail

MD_HOST="${GCE_METADATA_HOST:-metadata.google.internal}"
md() {
  curl -sSf --retry 5 --retry-connrefused -H 'Metadata-Flavor: Google' \
    "http://${MD_HOST}/computeMetadata/v1/$1"
}
attr() { md "instance/attributes/$1"; }
log() { printf 'relaunch-boot: %s\n' "$*"; }

RUN_ID="$(attr relaunch-run-id)" || { log "no relaunch-run-id metadata"; exit 1; }
ATTEMPT="$(attr relaunch-attempt)"
IMAGE="$(attr relaunch-image)"
GPUS="$(attr relaunch-gpus)"
GPU_TIMEOUT="$(attr relaunch-gpu-timeout)"
UPLOAD="$(attr relaunch-store-upload)"
LIVE_UPLOAD="$(attr relaunch-live-upload)"
REGISTRY="$(attr relaunch-registry || true)"
STOP_TIMEOUT="$(attr relaunch-stop-timeout || echo 25)"
case "${ATTEMPT}${GPUS}${GPU_TIMEOUT}${STOP_TIMEOUT}" in
  *[!0-9]*) log "malformed relaunch metadata"; exit 1 ;;
esac

jstr() {  # a JSON string
  printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\n\r\t')"
}
token() {
  md instance/service-accounts/default/token \
    | sed -n 's/.*"access_token"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p'
}
now() { date +%s.%N; }
AUTH="$(mktemp)"  # the token goes to curl in a file, never on a command line
chmod 600 "${AUTH}"
put() {  # put KEY JSON [BASE]: one object under runs/RUN_ID/ (or BASE) in the store
  local tok
  tok="$(token)" || tok=""
  printf 'Authorization: Bearer %s\n' "${tok}" > "${AUTH}"
  curl -sSf --retry 3 -X POST -H "@${AUTH}" \
    -H 'Content-Type: application/json' --data-binary "$2" "${3:-${UPLOAD}}$1" >/dev/null \
    || log "could not write $1 to the store"
}
event() {  # event KIND PHASE MESSAGE
  local name
  name="$(printf '%020d-%06x.json' "$(date +%s%N)" "$RANDOM")"
  put "events%2F${name}" "{\"time\": $(now), \"kind\": $(jstr "$1"), \"message\": $(jstr "$3"), \"attempt\": ${ATTEMPT}, \"data\": {\"phase\": $(jstr "$2")}}"
}
phase() { log "$1: $2"; event boot "$1" "attempt ${ATTEMPT}: $2"; }
fail() {  # fail REASON DETAIL: the attempt could not start; say why, then power off
  log "FATAL: $2"
  put "attempts%2F${ATTEMPT}.result.json" "{\"attempt\": ${ATTEMPT}, \"reason\": $(jstr "$1"), \"detail\": $(jstr "$2"), \"last_lines\": [$(jstr "$2")], \"ended_at\": $(now)}"
  event boot-failed "$1" "attempt ${ATTEMPT}: $2"
  put "heartbeat.json" "{\"time\": $(now), \"attempt\": ${ATTEMPT}, \"phase\": \"not-started\", \"host\": $(jstr "$(hostname)")}" "${LIVE_UPLOAD}"
  poweroff
  exit 1
}

NVIDIA=/var/lib/nvidia
if [ "${GPUS}" -gt 0 ]; then
  phase driver-installing "installing the GPU driver (cos-extensions install gpu)"
  if ! cos-extensions install gpu; then
    fail startup-timeout "the GPU driver did not install (cos-extensions install gpu failed): try another zone or raise gce.gpu_timeout"
  fi
  # COS mounts /var/lib noexec: the driver's tools must be executable.
  if ! { mount --bind "${NVIDIA}" "${NVIDIA}" && mount -o remount,exec "${NVIDIA}"; }; then
    log "could not remount ${NVIDIA} exec"
  fi
  SMI="${NVIDIA}/bin/nvidia-smi"
  [ -x "${SMI}" ] || SMI=nvidia-smi
  waited=0 seen=0 listing=""
  while :; do
    if listing="$("${SMI}" -L 2>&1)"; then
      seen="$(printf '%s\n' "${listing}" | grep -c '^GPU ' || true)"
      [ "${seen}" -ge "${GPUS}" ] && break
    fi
    if [ "${waited}" -ge "${GPU_TIMEOUT}" ]; then
      log "nvidia-smi -L: ${listing}"
      if printf '%s' "${listing}" | grep -qi 'no devices\|GPU '; then
        fail startup-timeout "no GPU detected: nvidia-smi lists ${seen} of ${GPUS} GPUs after ${waited}s: try another zone"
      fi
      fail startup-timeout "the GPU driver was not ready ${GPU_TIMEOUT}s after cos-extensions install gpu: raise gce.gpu_timeout (keep startup_timeout above it) or try another zone"
    fi
    sleep 5
    waited=$((waited + 5))
  done
  phase driver-ready "GPU driver ready: ${seen} GPU(s)"
fi

phase image-pulling "pulling ${IMAGE}"
DOCKER_CONFIG="$(mktemp -d)"
export DOCKER_CONFIG
if [ -n "${REGISTRY}" ]; then
  # Artifact Registry credentials come from the VM's service account.
  docker-credential-gcr configure-docker --registries="${REGISTRY}" \
    || log "docker-credential-gcr could not configure ${REGISTRY}"
fi
if ! pulled="$(docker pull "${IMAGE}" 2>&1)"; then
  printf '%s\n' "${pulled}"
  SA="$(md instance/service-accounts/default/email || echo 'the VM service account')"
  if printf '%s' "${pulled}" | grep -qi 'denied\|unauthorized\|forbidden\|403'; then
    fail image-pull "image pull denied for ${IMAGE}: grant ${SA} roles/artifactregistry.reader on its repository (relaunch images list shows what exists)"
  fi
  fail image-pull "the image ${IMAGE} could not be pulled: check it exists (relaunch images list) and ${SA} can read it"
fi

phase container-starting "starting the container"
args=(run --rm --name "relaunch-${ATTEMPT}" --network host --stop-timeout "${STOP_TIMEOUT}")
if [ "${GPUS}" -gt 0 ]; then
  args+=(--volume "${NVIDIA}/lib64:/usr/local/nvidia/lib64"
         --volume "${NVIDIA}/bin:/usr/local/nvidia/bin"
         --device /dev/nvidiactl --device /dev/nvidia-uvm
         -e LD_LIBRARY_PATH=/usr/local/nvidia/lib64)
  for ((i = 0; i < GPUS; i++)); do
    args+=(--device "/dev/nvidia${i}")
  done
fi
if [ -n "${GCE_METADATA_HOST:-}" ]; then
  args+=(-e "GCE_METADATA_HOST=${GCE_METADATA_HOST}")
fi
while IFS= read -r -d '' kv; do
  args+=(-e "${kv}")
done < <(attr relaunch-env | base64 -d)
argv=()
while IFS= read -r -d '' word; do
  argv+=("${word}")
done < <(attr relaunch-argv | base64 -d)
args+=("${IMAGE}" "${argv[@]}")

code=0
docker "${args[@]}" || code=$?
log "the container exited ${code}"
case "${code}" in
  125) fail user-error "docker could not start the container (exit 125): on COS that is usually the GPU runtime; read relaunch serial ${RUN_ID}" ;;
  126|127) fail user-error "the image cannot run the command (exit ${code}): is relaunch[gcp] installed in ${IMAGE}?" ;;
esac
event boot container-exited "attempt ${ATTEMPT}: the container exited ${code}; powering off"
poweroff
"""


def nul_joined(words: list[str] | dict[str, str]) -> str:
    """Words (or ``K=V`` pairs) NUL-terminated and base64-encoded, the way the script
    reads them with ``read -d ''``: no quoting, no word splitting."""
    items = [f"{k}={v}" for k, v in words.items()] if isinstance(words, dict) else list(words)
    for item in items:
        if "\0" in item:
            raise ValueError("a NUL byte cannot travel in a command or an environment value")
    return base64.b64encode("".join(f"{w}\0" for w in items).encode()).decode()


def startup_script() -> str:
    return STARTUP_SCRIPT
