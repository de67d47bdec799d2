#!/usr/bin/env bash
# Regenerates generated/ from protos/: messages, gRPC stubs and .pyi type stubs, importable as the
# package `portico` (generated/ is on the path through pyproject.toml).
#   scripts/gen_protos.sh                 regenerate generated/
#   scripts/gen_protos.sh --descriptor F  also write a descriptor set (with imports and source
#                                         info) to F, as Envoy's grpc_json_transcoder wants it
#   scripts/gen_protos.sh --out DIR       write the code to DIR instead (the freshness test)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=$(command -v python3)
case "$python" in /*) ;; *) python="$PWD/$python" ;; esac

descriptor=""
out=$PWD/generated
while [ $# -gt 0 ]; do
  case "$1" in
    --descriptor) descriptor=$(realpath -m "${2:?--descriptor needs a file}"); shift 2 ;;
    --out) out=$(realpath -m "${2:?--out needs a folder}"); shift 2 ;;
    *) echo "usage: $0 [--descriptor FILE] [--out DIR]" >&2; exit 2 ;;
  esac
done

# The include path of googleapis-common-protos (google/api/*.proto) and of grpcio-tools
# (google/protobuf/*.proto).
includes=$("$python" - <<'PY'
import os, google.api, grpc_tools
print(os.path.dirname(os.path.dirname(google.api.__path__[0])))
print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))
PY
)
mapfile -t inc <<<"$includes"
protos=$(cd protos && find portico -name '*.proto' | LC_ALL=C sort)

rm -rf "$out/portico"
mkdir -p "$out"
(cd protos && "$python" -m grpc_tools.protoc -I . -I "${inc[0]}" -I "${inc[1]}" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" $protos)
# Packages, so that `import portico.user.v1.user_pb2` works from an installed tree too.
find "$out/portico" -type d -exec touch {}/__init__.py \;

if [ -n "$descriptor" ]; then
  (cd protos && "$python" -m grpc_tools.protoc -I . -I "${inc[0]}" -I "${inc[1]}" \
    --include_imports --include_source_info --descriptor_set_out="$descriptor" $protos)
fi
