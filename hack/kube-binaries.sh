#!/usr/bin/env bash
# Provides pinned etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kubectl and helm binaries for end-to-end tests, built from Go modules and cached outside
# the work tree. Progress goes to stderr; the last stdout line is the bin folder:
#   BIN=$(hack/kube-binaries.sh | tail -1)
# With the argument `kwok`, the bin folder also holds KWOK's `kwok` (the scale benchmark's
# simulated node); only that benchmark asks for it, so the tests never build it.
set -euo pipefail

K8S_VERSION=v1.34.4
K8S_STAGING_VERSION=v0.${K8S_VERSION#v1.} # k8s.io/api etc. are tagged v0.MINOR.PATCH
ETCD_VERSION=v3.6.5
HELM_VERSION=v3.19.5
KWOK_VERSION=v0.8.0

CACHE_ROOT=${EVAL_OPERATOR_CACHE:-$HOME/.cache/eval-operator}
CACHE_DIR=$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION
BIN_DIR=$CACHE_DIR/bin
BUILD_DIR=$CACHE_DIR/build
# A folder of its own: a new KWOK version does not invalidate the other binaries' cache.
KWOK_BIN_DIR=$CACHE_ROOT/kwok-$KWOK_VERSION/bin

WITH_KWOK=""
for arg in "$@"; do
    case $arg in
    kwok) WITH_KWOK=1 ;;
    *)
        echo "usage: $0 [kwok]" >&2
        exit 2
        ;;
    esac
done

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export CGO_ENABLED=0

log() { echo "kube-binaries: $*" >&2; }

# envtest convention: prefer a complete control plane from KUBEBUILDER_ASSETS.
ASSETS=""
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] &&
    [[ -x $KUBEBUILDER_ASSETS/etcd && -x $KUBEBUILDER_ASSETS/kube-apiserver &&
        -x $KUBEBUILDER_ASSETS/kube-controller-manager ]]; then
    ASSETS=$KUBEBUILDER_ASSETS
elif [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
    log "KUBEBUILDER_ASSETS lacks etcd, kube-apiserver or kube-controller-manager; not using it"
fi

# Path of an already available binary, or nothing.
have() {
    if [[ -n $ASSETS && -x $ASSETS/$1 ]]; then
        echo "$ASSETS/$1"
    elif [[ -x $BIN_DIR/$1 ]]; then
        echo "$BIN_DIR/$1"
    fi
}

# Moves freshly built binaries into BIN_DIR (rename is atomic on one filesystem).
install_bins() {
    local out=$1
    shift
    for name in "$@"; do
        mv -f "$out/$name" "$BIN_DIR/$name"
    done
}

build_etcd() {
    local dir=$BUILD_DIR/etcd start=$SECONDS
    log "building etcd $ETCD_VERSION"
    rm -rf "$dir" && mkdir -p "$dir/out"
    cat >"$dir/go.mod" <<EOF
module localbuild/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
    cat >"$dir/main.go" <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
    (cd "$dir" && "$GO" build -mod=mod -trimpath -ldflags '-s -w' -o out/etcd .)
    install_bins "$dir/out" etcd
    log "built etcd in $((SECONDS - start))s"
}

# Builds k8s.io/kubernetes commands. Its go.mod replaces the k8s.io/* staging
# modules with ./staging/... paths, which only apply inside that repository, so
# the same modules are pinned here at their published staging version.
build_kube() {
    local dir=$BUILD_DIR/kubernetes start=$SECONDS gomod name pkgs=() ldflags major minor
    log "building $* $K8S_VERSION"
    rm -rf "$dir" && mkdir -p "$dir/out"
    gomod=$(cd "$dir" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
    [[ -f $gomod ]] || { log "no go.mod found for k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
    {
        printf 'module localbuild/kubernetes\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\n' "$K8S_VERSION"
        awk -v v="$K8S_STAGING_VERSION" \
            '$2 == "=>" && $3 ~ /^\.\/staging\// { print "replace " $1 " => " $1 " " v }' "$gomod"
    } >"$dir/go.mod"
    ldflags="-s -w"
    IFS=. read -r major minor _ <<<"${K8S_VERSION#v}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitTreeState=clean"
        ldflags+=" -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    done
    for name in "$@"; do
        pkgs+=("k8s.io/kubernetes/cmd/$name")
    done
    (cd "$dir" && "$GO" build -mod=mod -trimpath -ldflags "$ldflags" -o out/ "${pkgs[@]}")
    install_bins "$dir/out" "$@"
    log "built $* in $((SECONDS - start))s"
}

build_helm() {
    local dir=$BUILD_DIR/helm start=$SECONDS
    log "building helm $HELM_VERSION"
    rm -rf "$dir" && mkdir -p "$dir/out"
    GOBIN=$dir/out "$GO" install -trimpath \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    install_bins "$dir/out" helm
    log "built helm in $((SECONDS - start))s"
}

build_kwok() {
    local dir=$BUILD_DIR/kwok start=$SECONDS
    log "building kwok $KWOK_VERSION"
    rm -rf "$dir" && mkdir -p "$dir/out" "$KWOK_BIN_DIR"
    GOBIN=$dir/out "$GO" install -trimpath -ldflags '-s -w' \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    mv -f "$dir/out/kwok" "$KWOK_BIN_DIR/kwok"
    log "built kwok in $((SECONDS - start))s"
}

mkdir -p "$BIN_DIR" "$BUILD_DIR"
# One build at a time per cache folder, so parallel callers wait and then reuse.
exec 9>"$CACHE_DIR/.lock"
flock 9

[[ -n $(have etcd) ]] || build_etcd
kube_missing=()
for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    [[ -n $(have "$name") ]] || kube_missing+=("$name")
done
((${#kube_missing[@]} == 0)) || build_kube "${kube_missing[@]}"
[[ -n $(have helm) ]] || build_helm
if [[ -n $WITH_KWOK && ! -x $KWOK_BIN_DIR/kwok ]]; then
    build_kwok
fi

out_dir=$BIN_DIR
if [[ -n $ASSETS ]]; then
    # One folder holding the assets' binaries plus the cached kubectl/helm.
    out_dir=$CACHE_ROOT/kubebuilder-assets-$(cksum <<<"$ASSETS" | cut -d' ' -f1)/bin
    mkdir -p "$out_dir"
    for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl helm; do
        ln -sfn "$(have "$name")" "$out_dir/$name"
    done
fi
if [[ -n $WITH_KWOK ]]; then
    ln -sfn "$KWOK_BIN_DIR/kwok" "$out_dir/kwok"
fi
log "binaries ready in $out_dir"
echo "$out_dir"
