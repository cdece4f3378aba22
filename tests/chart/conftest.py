"""Shared helpers for the chart tests: render charts/eargate with Helm's own engine
(helm-python-sdk binds the Helm Go SDK) and look objects up in the result.

Missing tools: the tests FAIL when EARGATE_REQUIRE_TOOLS=1 (what `make test` sets) and are
skipped loudly otherwise. `make test-deps` installs them into .venv.
"""

from __future__ import annotations

import base64
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "eargate"
RELEASE = "eargate"
NAMESPACE = "eargate-system"
# Kubernetes versions every rendered manifest is checked against: the chart's minimum
# (Chart.yaml kubeVersion) and the version eargate's k8s-openapi types target.
KUBE_VERSIONS = ["1.27", "1.33"]


MISSING: list[str] = []


def need(module: str) -> Any:
    """Imports a tool the chart tests need; records it in MISSING when absent (the test
    module then fails or skips loudly: conftest itself may not skip)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        MISSING.append(f"{module} ({err})")
        return None


def require_tools() -> None:
    """Fails (EARGATE_REQUIRE_TOOLS=1) or skips the calling test module, loudly, when a
    tool is missing."""
    if not MISSING:
        return
    msg = (
        f"chart tests need the Python modules {', '.join(MISSING)}; "
        "install them with `bash scripts/install-test-deps.sh` (creates .venv)"
    )
    if os.environ.get("EARGATE_REQUIRE_TOOLS") == "1":
        pytest.fail(msg, pytrace=False)
    print(f"\n!!!!! SKIPPING the chart tests: {msg} !!!!!\n", file=sys.stderr)
    pytest.skip(msg, allow_module_level=True)


yaml = need("yaml")
helm = need("helm_python")
kubernetes_validate = need("kubernetes_validate")
jsonschema = need("jsonschema")
x509 = need("cryptography.x509")


def render(values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> list[dict]:
    """Renders the chart as `helm install` would (offline: `lookup` finds nothing) and
    returns every object, NOTES.txt excluded."""
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    objects = []
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                objects.append(doc)
    return objects


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def deployment(objects: list[dict], component: str) -> dict:
    deps = [
        o
        for o in find(objects, "Deployment")
        if o["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(deps) == 1, f"expected one {component} Deployment, found {len(deps)}"
    return deps[0]


def container(dep: dict) -> dict:
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def b64pem(data: str) -> bytes:
    return base64.b64decode(data, validate=True)


def load_cert(pem: bytes):
    return x509.load_pem_x509_certificate(pem)


# Values for each mode the acceptance list names.
SEED_STATUS_WRITER = "system:serviceaccount:kubermatic:kubermatic-seed-controller-manager"
MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "cert-manager": {"tls": {"mode": "certManager"}},
    "cert-manager-issuer": {
        "tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}}
    },
    "existing-secret": {"tls": {"mode": "secret", "secret": {"name": "eargate-certs", "caBundle": "FILLED-IN-BY-FIXTURE"}}},
    "gate-only": {
        "crds": {"install": False},
        "reconciler": {"enabled": False},
        "webhook": {"statusWriters": [SEED_STATUS_WRITER]},
    },
    "crds-off": {"crds": {"install": False}},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
}


@pytest.fixture(scope="session")
def dev_pki() -> dict[str, bytes]:
    """A CA and a serving certificate for the webhook Service, like `eargate certs` writes."""
    from datetime import datetime, timedelta, timezone

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eargate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "eargate-webhook.eargate-system.svc")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("eargate-webhook.eargate-system.svc")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "tls.crt": cert.public_bytes(serialization.Encoding.PEM),
    }


@pytest.fixture(scope="session")
def rendered(dev_pki) -> dict[str, list[dict]]:
    """Every mode rendered once."""
    out = {}
    for mode, values in MODES.items():
        if mode == "existing-secret":
            values = {"tls": {"mode": "secret", "secret": {"name": "eargate-certs", "caBundle": dev_pki["ca.crt"].decode()}}}
        out[mode] = render(values)
    return out
