"""A real Kubernetes API server for tests, started and stopped through ``scripts/envtest``.

The script and this module share one way to start the control plane, so what CI runs is what a
developer runs by hand. There is no kubelet or scheduler: tests play those parts by patching
Pod and Job status.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "envtest"


@dataclass
class Envtest:
    """A running control plane: its kubeconfig, and a client logged in as admin."""

    kubeconfig: Path
    api: client.ApiClient

    @property
    def run_dir(self) -> Path:
        return self.kubeconfig.parent

    def get_json(self, path: str, accept: str = "application/json") -> Any:
        """GET ``path`` as the admin with a chosen Accept header (tables, raw lists)."""
        import json

        return json.loads(self._get(path, accept))

    def get_text(self, path: str) -> str:
        """GET ``path`` as the admin, as text (``/metrics``)."""
        return self._get(path, "text/plain").decode()

    def _get(self, path: str, accept: str) -> bytes:
        import urllib3

        configuration = self.api.configuration
        headers = {"Accept": accept, "Authorization": configuration.get_api_key_with_prefix("BearerToken")}
        pool = urllib3.PoolManager(ca_certs=configuration.ssl_ca_cert)
        response = pool.request("GET", configuration.host + path, headers=headers)
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {response.data[:300]!r}")
        return bytes(response.data)

    def kubeconfig_for(self, context: str) -> Path:
        """A copy of the kubeconfig whose current context is ``context``."""
        import yaml

        data = yaml.safe_load(self.kubeconfig.read_text())
        data["current-context"] = context
        path = self.kubeconfig.with_name(f"kubeconfig-{context}")
        path.write_text(yaml.safe_dump(data))
        return path

    def client_for(self, context: str) -> client.ApiClient:
        """A client for another kubeconfig context (``operator``: the operator's own identity)."""
        return config.new_client_from_config(config_file=str(self.kubeconfig), context=context)


def start() -> Envtest:
    """Start etcd, kube-apiserver and kube-controller-manager; raise with the script's output if it fails."""
    if not SCRIPT.exists():
        raise RuntimeError(f"{SCRIPT} is missing")
    result = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/envtest up failed:\n{result.stderr}{result.stdout}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("KUBECONFIG="))
    kubeconfig = Path(line.split("=", 1)[1])
    return Envtest(kubeconfig, config.new_client_from_config(config_file=str(kubeconfig)))


def stop(env: Envtest) -> None:
    subprocess.run([str(SCRIPT), "down", str(env.run_dir)], check=False, timeout=60)


def apply_crds(api: client.ApiClient, crds: list[dict[str, Any]], timeout: float = 30) -> None:
    """Create or replace the CRDs and wait until the API server serves them."""
    extensions = client.ApiextensionsV1Api(api)
    for crd in crds:
        name = crd["metadata"]["name"]
        try:
            current: Any = extensions.read_custom_resource_definition(name)
            crd = {**crd, "metadata": {**crd["metadata"], "resourceVersion": current.metadata.resource_version}}
            extensions.replace_custom_resource_definition(name, crd)  # type: ignore[arg-type]
        except ApiException as error:
            if error.status != 404:
                raise
            extensions.create_custom_resource_definition(crd)  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout
    for crd in crds:
        name = crd["metadata"]["name"]
        while True:
            status: Any = extensions.read_custom_resource_definition(name).status
            if any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established after {timeout}s")
            time.sleep(0.1)
