#!/usr/bin/env bash
# Build Helm from its Go module into a cache outside the repo (idempotent) and print nothing else
# but progress. Used by .ci/run and the chart tests (tests/chart/).
#
#   scripts/helm.sh                 build if missing
#   scripts/helm.sh --print-bin     print the helm binary's path, build nothing
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
BIN_DIR="${HELM_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ml-connector/tools/helm-${HELM_VERSION}}"
case "${1:-}" in
  --print-bin) echo "${BIN_DIR}/helm"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-bin]" >&2; exit 2 ;;
esac
if [[ -x "${BIN_DIR}/helm" ]]; then
  echo "helm: ${HELM_VERSION} already in ${BIN_DIR}"
  exit 0
fi
command -v go >/dev/null || { echo "helm: the go command is needed to build helm" >&2; exit 1; }
mkdir -p "${BIN_DIR}"
start=$(date +%s)
GOBIN="${BIN_DIR}" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}"
echo "helm: built ${HELM_VERSION} in $(( $(date +%s) - start ))s into ${BIN_DIR}"
