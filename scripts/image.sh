#!/usr/bin/env bash
# Build the container image from the repository's Dockerfile for real, with no Docker engine and no registry:
# buildah from Debian's packages (vfs storage, chroot isolation), on a base image made here with debootstrap.
#
#   scripts/image.sh                 build what is missing or stale; print the image reference last
#   scripts/image.sh --rebuild       rebuild the image even if its inputs did not change (base kept)
#   scripts/image.sh --rebuild-base  debootstrap the base again, then rebuild the image
#   scripts/image.sh --print-image   print the image reference; build nothing
#   scripts/image.sh --print-env     print the KEY=VALUE environment that points buildah at this storage
#   scripts/image.sh buildah ARGS    run buildah with that environment (e.g. `scripts/image.sh buildah images`)
#
# Idempotent. Everything lives outside the repository, under ${XDG_CACHE_HOME:-$HOME/.cache}/ml-connector/image
# (override with ML_CONNECTOR_IMAGE_CACHE):
#   rootfs-<release>-<arch>.tar   the debootstrap --variant=minbase root filesystem of the Debian release this
#                                 machine runs, with python3, python3-venv and ca-certificates only
#   storage/ run/                 buildah's image storage (vfs) and run state
#   containers/                   storage.conf and registries.conf (no registry is ever searched or pulled from)
# The base is committed as localhost/ml-connector-base:<release>, the image as localhost/ml-connector:<version>,
# labelled with a digest of its inputs (Dockerfile, .dockerignore, pyproject.toml, README.md, operator/, base
# image, version, revision): an image whose inputs did not change is not built again.
#
# pip inside the build container gets the host pip's index settings (index-url, extra-index-url, trusted-host
# from the PIP_* environment or pip's configuration files) as build arguments, and the host's CA bundle when pip
# is configured with one (`cert`), bind-mounted for the build only. Their values are never printed.
# Needs root (debootstrap; buildah with vfs and chroot isolation) and the Debian packages buildah and
# debootstrap: `scripts/system-deps.sh` installs them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ML_CONNECTOR_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ml-connector/image}"
# shellcheck disable=SC1091
RELEASE="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
VERSION="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "${ROOT}/pyproject.toml" | head -n 1)"
BASE_IMAGE="localhost/ml-connector-base:${RELEASE}"
IMAGE="localhost/ml-connector:${VERSION}"
BASE_PACKAGES="python3,python3-venv,ca-certificates"
INPUTS_LABEL="com.ml-connector.build-inputs"
# The base's own CA bundle path: the host's bundle is bind-mounted over this existing file during RUN steps, so
# the mount leaves no mount point behind in any layer, and the base's file is untouched.
CERT_IN_BUILD="/etc/ssl/certs/ca-certificates.crt"

say() { printf 'image: %s\n' "$*" >&2; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }

storage_env() {
  printf '%s\n' \
    "CONTAINERS_STORAGE_CONF=${CACHE}/containers/storage.conf" \
    "CONTAINERS_REGISTRIES_CONF=${CACHE}/containers/registries.conf" \
    "STORAGE_DRIVER=vfs" \
    "BUILDAH_ISOLATION=chroot"
}

write_container_config() {
  mkdir -p "${CACHE}/containers" "${CACHE}/storage" "${CACHE}/run"
  cat >"${CACHE}/containers/storage.conf" <<EOF
# Written by scripts/image.sh: the project's own image storage, outside the repository.
[storage]
driver = "vfs"
graphroot = "${CACHE}/storage"
runroot = "${CACHE}/run"
EOF
  cat >"${CACHE}/containers/registries.conf" <<EOF
# Written by scripts/image.sh: no registry is reachable, so none is searched for short names.
unqualified-search-registries = []
EOF
  local line
  while IFS= read -r line; do export "${line?}"; done < <(storage_env)
}

rebuild=0
rebuild_base=0
case "${1:-}" in
  "") ;;
  --rebuild) rebuild=1 ;;
  --rebuild-base) rebuild=1; rebuild_base=1 ;;
  --print-image) echo "${IMAGE}"; exit 0 ;;
  --print-env) storage_env; exit 0 ;;
  buildah) shift; write_container_config; exec buildah "$@" ;;
  *) echo "usage: $0 [--rebuild | --rebuild-base | --print-image | --print-env | buildah ARGS...]" >&2; exit 2 ;;
esac

[[ -n "${RELEASE}" ]] || die "cannot tell this machine's Debian release: /etc/os-release has no VERSION_CODENAME"
[[ -n "${VERSION}" ]] || die "no version = \"...\" line in ${ROOT}/pyproject.toml"
[[ "$(id -u)" -eq 0 ]] || die "needs root (debootstrap, and buildah with vfs storage and chroot isolation)"
for tool in buildah debootstrap; do
  command -v "${tool}" >/dev/null || die "${tool} is not installed: run scripts/system-deps.sh (Debian packages buildah, debootstrap)"
done

mkdir -p "${CACHE}"
exec 9>"${CACHE}/lock"
flock 9 # one build at a time on this storage
write_container_config

# The mirror this machine's apt uses for its own release: debootstrap fetches the same packages apt would.
debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "${DEBIAN_MIRROR}"; return; fi
  # shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
  apt-get indextargets --format '$(TARGET_OF) $(IDENTIFIER) $(RELEASE) $(REPO_URI)' 2>/dev/null \
    | awk -v rel="${RELEASE}" '$1 == "deb" && $2 == "Packages" && $3 == rel { print $4; exit }'
}

# Remove what a minimal image has no use for, as Debian's own slim images do (docs but copyright, man pages,
# locales, apt lists and archives, logs), and what belongs to the host (hostname, resolver, device nodes).
slim_rootfs() {
  local r=${1:?}
  [[ "${r}" != / && -d "${r}/etc/dpkg" ]] || die "not a debootstrap root filesystem: ${r}"
  find "${r:?}/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "${r:?}/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "${r:?}/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf --one-file-system {} +
  rm -rf --one-file-system "${r:?}"/usr/share/man/* "${r:?}"/usr/share/info/* "${r:?}"/usr/share/groff/* \
    "${r:?}"/usr/share/lintian/* "${r:?}"/var/lib/apt/lists/* "${r:?}"/var/cache/apt/archives/*.deb \
    "${r:?}"/var/cache/apt/*.bin "${r:?}"/var/cache/debconf/*-old "${r:?}"/var/lib/dpkg/*-old \
    "${r:?}"/var/log/*.log "${r:?}"/var/log/apt/* "${r:?}"/dev/* "${r:?}"/tmp/* "${r:?}"/root/.cache
  mkdir -p "${r}/var/lib/apt/lists/partial"
  cat >"${r}/etc/dpkg/dpkg.cfg.d/ml-connector-slim" <<'EOF'
# Keep images built on this base slim, as Debian's slim images do.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  : >"${r}/etc/hostname"
  : >"${r}/etc/resolv.conf"
}

make_rootfs() {
  local tar=$1 mirror work start
  mirror="$(debian_mirror)"
  [[ -n "${mirror}" ]] || die "no apt source for ${RELEASE} on this machine (apt-get indextargets); set DEBIAN_MIRROR"
  work="$(mktemp -d "${CACHE}/rootfs.XXXXXX")"
  # debootstrap mounts /proc and /sys in the target: never delete through a mount.
  trap 'umount -R "'"${work}"'/rootfs" 2>/dev/null || true; rm -rf --one-file-system "'"${work}"'"' EXIT
  say "debootstrap --variant=minbase ${RELEASE} (${BASE_PACKAGES}) from this machine's apt mirror"
  start=${SECONDS}
  if ! debootstrap --variant=minbase --include="${BASE_PACKAGES}" "${RELEASE}" "${work}/rootfs" "${mirror}" \
    >"${work}/debootstrap.log" 2>&1; then
    tail -n 30 "${work}/debootstrap.log" >&2
    die "debootstrap failed (log above)"
  fi
  say "debootstrap took $((SECONDS - start))s"
  slim_rootfs "${work}/rootfs"
  tar -C "${work}/rootfs" --numeric-owner -cf "${tar}.tmp" .
  mv "${tar}.tmp" "${tar}"
  rm -rf --one-file-system "${work}"
  trap - EXIT
}

import_base() {
  local tar=$1 ctr
  ctr="$(buildah from --pull=never scratch)"
  buildah add --quiet "${ctr}" "${tar}" / >/dev/null
  buildah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd /bin/bash --label "org.opencontainers.image.description=Debian ${RELEASE} minbase with ${BASE_PACKAGES}" \
    "${ctr}"
  buildah commit --quiet --rm "${ctr}" "${BASE_IMAGE}" >/dev/null
}

image_exists() { buildah inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------------- base image
ARCH="$(dpkg --print-architecture)"
ROOTFS_TAR="${CACHE}/rootfs-${RELEASE}-${ARCH}.tar"
if [[ ${rebuild_base} -eq 1 ]]; then
  rm -f "${ROOTFS_TAR}"
  buildah rmi --force "${BASE_IMAGE}" >/dev/null 2>&1 || true
fi
[[ -f "${ROOTFS_TAR}" ]] || make_rootfs "${ROOTFS_TAR}"
if [[ -z "$(image_exists "${BASE_IMAGE}")" ]]; then
  start=${SECONDS}
  import_base "${ROOTFS_TAR}"
  say "committed ${BASE_IMAGE} from ${ROOTFS_TAR} in $((SECONDS - start))s"
fi
base_id="$(image_exists "${BASE_IMAGE}")"

# ------------------------------------------------------------------------------------------ pip settings of the host
pip_config=""
for py in python3 "${ROOT}/.venv/bin/python"; do
  if pip_config="$("${py}" -m pip config list 2>/dev/null)"; then break; fi
  pip_config=""
done
# host_pip KEY: the environment first (PIP_KEY), then pip's [install] section, then [global].
host_pip() {
  local key=$1 env_name line value
  env_name="PIP_$(tr 'a-z-' 'A-Z_' <<<"${key}")"
  if [[ -n "${!env_name:-}" ]]; then printf '%s' "${!env_name}"; return; fi
  for section in install global; do
    line="$(grep -m 1 "^${section}\.${key}=" <<<"${pip_config}" || true)"
    if [[ -n "${line}" ]]; then
      value="${line#*=}"; value="${value#\'}"; value="${value%\'}"
      printf '%s' "${value//\\n/ }" # a list setting's lines (shown as \n) become the space-separated PIP_* form
      return
    fi
  done
}
pip_args=()
pip_passed=()
for key in index-url extra-index-url trusted-host; do
  value="$(host_pip "${key}")"
  if [[ -n "${value}" ]]; then
    pip_args+=(--build-arg "PIP_$(tr 'a-z-' 'A-Z_' <<<"${key}")=${value}")
    pip_passed+=("${key}")
  fi
done
cert="$(host_pip cert)"
if [[ -n "${cert}" ]]; then
  [[ -f "${cert}" ]] || die "pip's cert setting names a file that does not exist: ${cert}"
  pip_args+=(--volume "${cert}:${CERT_IN_BUILD}:ro" --build-arg "PIP_CERT=${CERT_IN_BUILD}")
  pip_passed+=("cert (the host's CA bundle, mounted for the build)")
fi

# -------------------------------------------------------------------------------------------------------- the image
REVISION="$(git -C "${ROOT}" rev-parse HEAD 2>/dev/null || echo unknown)"
# The build context's inputs: what the Dockerfile copies, plus the Dockerfile and .dockerignore themselves.
inputs_digest() {
  {
    printf '%s\n' "base=${base_id}" "version=${VERSION}" "revision=${REVISION}"
    (cd "${ROOT}" && find Dockerfile .dockerignore pyproject.toml README.md operator -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -d ' ' -f 1
}
digest="$(inputs_digest)"
current="$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"${INPUTS_LABEL}\"}}" "${IMAGE}" 2>/dev/null || true)"
if [[ ${rebuild} -eq 0 && "${current}" == "${digest}" ]]; then
  say "${IMAGE} is up to date (inputs ${digest:0:12})"
else
  say "building ${IMAGE} on ${BASE_IMAGE}; pip settings passed from the host: ${pip_passed[*]:-none}"
  start=${SECONDS}
  buildah build \
    --isolation chroot --storage-driver vfs --pull=never --layers=false --force-rm \
    --build-arg "BASE_IMAGE=${BASE_IMAGE}" --build-arg "VERSION=${VERSION}" --build-arg "REVISION=${REVISION}" \
    "${pip_args[@]}" \
    --label "${INPUTS_LABEL}=${digest}" \
    -f "${ROOT}/Dockerfile" -t "${IMAGE}" "${ROOT}" 2>&1 \
    | grep -v 'level=warning msg="missing \\"PIP_' >&2 # the pip settings this host does not set
  say "built ${IMAGE} in $((SECONDS - start))s"
fi
buildah rmi --prune >/dev/null 2>&1 || true # images replaced by a newer build, once no container uses them
size="$(buildah images --format '{{.Size}}' "${IMAGE}" | head -n 1)"
base_size="$(buildah images --format '{{.Size}}' "${BASE_IMAGE}" | head -n 1)"
say "${IMAGE}: ${size} (base ${BASE_IMAGE}: ${base_size})"
echo "${IMAGE}"
