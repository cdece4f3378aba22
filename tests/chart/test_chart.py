"""The chart, rendered by Helm's engine in every mode, checked against the Kubernetes
OpenAPI schemas and against what eargate needs: a gate that fails closed, a CA bundle
that matches the serving certificate, least-privilege RBAC and hardened pods."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from conftest import (
    CHART,
    KUBE_VERSIONS,
    MODES,
    NAMESPACE,
    ROOT,
    SEED_STATUS_WRITER,
    b64pem,
    container,
    deployment,
    find,
    helm,
    jsonschema,
    kubernetes_validate,
    load_cert,
    one,
    render,
    require_tools,
    yaml,
)

require_tools()

# Groups whose kinds are CustomResources, not in Kubernetes' OpenAPI: checked field by field.
CRD_TYPED_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")

WEBHOOK_SVC = "eargate-webhook"
RECONCILER_SA = "eargate-reconciler"


def shared_name(const: str) -> str:
    """A string constant from crates/policy/src/names.rs, the one place shared names live."""
    names = (ROOT / "crates" / "policy" / "src" / "names.rs").read_text()
    m = re.search(rf'pub const {const}: &str = "([^"]+)";', names)
    assert m, f"{const} not found in names.rs"
    return m.group(1)


def default_status_writer() -> str:
    """eargate's built-in default status writer."""
    return shared_name("DEFAULT_STATUS_WRITER")


def args_of(dep: dict) -> list[str]:
    return container(dep)["args"]


def flag(args: list[str], name: str) -> list[str]:
    prefix = f"--{name}="
    return [a[len(prefix):] for a in args if a.startswith(prefix)]


# ---------------------------------------------------------------- schemas


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("mode", list(MODES))
def test_every_manifest_is_valid_kubernetes(rendered, mode, kube_version):
    objects = rendered[mode]
    assert objects, "nothing rendered"
    checked = 0
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj
        if obj["apiVersion"].startswith(CRD_TYPED_GROUPS):
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as err:
            where = "/".join(str(p) for p in getattr(err, "path", []))
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} is invalid for Kubernetes {kube_version}: {err.message} at /{where}", pytrace=False)
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize("mode", list(MODES))
def test_namespaced_objects_live_in_the_release_namespace(rendered, mode):
    cluster_scoped = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    for obj in rendered[mode]:
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_helm_lint_is_clean():
    for values in MODES.values():
        if values.get("tls", {}).get("mode") == "secret":
            continue
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        errors = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
        assert not errors, errors


# ---------------------------------------------------------------- webhook configurations


@pytest.mark.parametrize("mode", list(MODES))
def test_webhook_configurations_fail_closed_with_exact_rules(rendered, mode):
    objects = rendered[mode]
    svc = one(objects, "Service", WEBHOOK_SVC)
    port = svc["spec"]["ports"][0]
    assert port["name"] == "https"
    expected = {
        "MutatingWebhookConfiguration": ("/mutate", ["clusters"], shared_name("MUTATING_WEBHOOK_NAME")),
        "ValidatingWebhookConfiguration": ("/validate", ["clusters", "clusters/status"], shared_name("VALIDATING_WEBHOOK_NAME")),
    }
    for kind, (path, resources, webhook_name) in expected.items():
        cfg = one(objects, kind)
        assert len(cfg["webhooks"]) == 1
        wh = cfg["webhooks"][0]
        # The name kube-apiserver quotes in denials: the one the server and docs use.
        assert wh["name"] == webhook_name
        assert wh["failurePolicy"] == "Fail"
        assert wh["sideEffects"] == "None"
        assert wh["admissionReviewVersions"] == ["v1", "v1beta1"]
        assert wh["matchPolicy"] == "Equivalent"
        assert 1 <= wh["timeoutSeconds"] <= 10
        assert wh["rules"] == [
            {
                "apiGroups": ["kubermatic.k8c.io"],
                "apiVersions": ["v1"],
                "resources": resources,
                "operations": ["CREATE", "UPDATE"],
                "scope": "Cluster",
            }
        ]
        ref = wh["clientConfig"]["service"]
        assert ref == {"name": WEBHOOK_SVC, "namespace": NAMESPACE, "path": path, "port": port["port"]}
        assert "url" not in wh["clientConfig"]
    # The Service's target port is the container port the server listens on.
    c = container(deployment(objects, "webhook"))
    https = [p for p in c["ports"] if p["name"] == port["targetPort"]]
    assert len(https) == 1 and flag(c["args"], "listen") == [f"0.0.0.0:{https[0]['containerPort']}"]


def test_webhook_service_name_matches_the_dev_certificate_of_make_certs(rendered):
    """`make certs` issues for eargate-webhook.eargate-system.svc: the default release's
    Service must have that name, so those certificates work with tls.mode=secret."""
    makefile = (ROOT / "Makefile").read_text()
    assert f"{WEBHOOK_SVC}.{NAMESPACE}.svc" in makefile
    one(rendered["default"], "Service", WEBHOOK_SVC)


# ---------------------------------------------------------------- TLS


def serving_secret_name(objects) -> str:
    vols = deployment(objects, "webhook")["spec"]["template"]["spec"]["volumes"]
    tls = [v for v in vols if v["name"] == "tls"]
    assert len(tls) == 1
    return tls[0]["secret"]["secretName"]


def ca_bundles(objects) -> list[str]:
    return [
        wh["clientConfig"].get("caBundle")
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
        for wh in one(objects, kind)["webhooks"]
    ]


def test_helm_generated_ca_bundle_signs_the_serving_certificate(rendered):
    from cryptography.hazmat.primitives import serialization

    objects = rendered["default"]
    bundles = ca_bundles(objects)
    assert bundles[0] and len(set(bundles)) == 1, "both webhook configurations must carry the same CA bundle"
    secret = one(objects, "Secret", serving_secret_name(objects))
    assert secret["type"] == "kubernetes.io/tls"
    ca = load_cert(b64pem(bundles[0]))
    assert b64pem(secret["data"]["ca.crt"]) == b64pem(bundles[0])
    cert = load_cert(b64pem(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)  # raises when the CA did not sign it
    key = serialization.load_pem_private_key(b64pem(secret["data"]["tls.key"]), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers(), "tls.key does not belong to tls.crt"
    san = cert.extensions.get_extension_for_class(__import__("cryptography").x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(__import__("cryptography").x509.DNSName)
    assert f"{WEBHOOK_SVC}.{NAMESPACE}.svc" in dns  # the name kube-apiserver dials
    now = datetime.now(timezone.utc)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc
    assert ca.extensions.get_extension_for_class(__import__("cryptography").x509.BasicConstraints).value.ca


def test_helm_generated_pair_is_fresh_per_install_but_always_consistent():
    a, b = render(), render()
    assert ca_bundles(a)[0] != ca_bundles(b)[0]
    for objects in (a, b):
        secret = one(objects, "Secret", serving_secret_name(objects))
        load_cert(b64pem(secret["data"]["tls.crt"])).verify_directly_issued_by(load_cert(b64pem(ca_bundles(objects)[0])))


def test_existing_secret_mode_uses_the_given_secret_and_ca(rendered, dev_pki):
    objects = rendered["existing-secret"]
    assert serving_secret_name(objects) == "eargate-certs"
    assert not find(objects, "Secret"), "the chart must not create a serving Secret in secret mode"
    bundles = ca_bundles(objects)
    assert len(set(bundles)) == 1
    ca = load_cert(b64pem(bundles[0]))
    assert b64pem(bundles[0]) == dev_pki["ca.crt"]
    load_cert(dev_pki["tls.crt"]).verify_directly_issued_by(ca)


def test_existing_secret_mode_accepts_a_base64_ca_bundle(dev_pki):
    import base64

    b64 = base64.b64encode(dev_pki["ca.crt"]).decode()
    objects = render({"tls": {"mode": "secret", "secret": {"name": "eargate-certs", "caBundle": b64}}})
    assert set(ca_bundles(objects)) == {b64}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"tls": {"mode": "secret", "secret": {"name": "eargate-certs"}}}, "tls.secret.caBundle"),
        ({"tls": {"mode": "secret", "secret": {"caBundle": "x"}}}, "tls.secret.name"),
        ({"tls": {"mode": "selfsigned"}}, "tls.mode must be one of"),
        ({"reconciler": {"enabled": False}}, "webhook.statusWriters"),
    ],
)
def test_incomplete_values_are_refused_with_a_clear_message(values, message):
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


@pytest.mark.parametrize("mode", ["cert-manager", "cert-manager-issuer"])
def test_cert_manager_issues_the_serving_certificate_and_injects_its_ca(rendered, mode):
    objects = rendered[mode]
    assert not find(objects, "Secret")
    certs = {c["metadata"]["name"]: c for c in find(objects, "Certificate")}
    serving = certs[WEBHOOK_SVC]
    assert serving["apiVersion"] == "cert-manager.io/v1"
    assert serving["spec"]["secretName"] == serving_secret_name(objects)
    assert f"{WEBHOOK_SVC}.{NAMESPACE}.svc" in serving["spec"]["dnsNames"]
    assert "server auth" in serving["spec"]["usages"]
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        cfg = one(objects, kind)
        assert cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{WEBHOOK_SVC}"
        assert all("caBundle" not in wh["clientConfig"] for wh in cfg["webhooks"])
    issuer_ref = serving["spec"]["issuerRef"]
    if mode == "cert-manager-issuer":
        assert issuer_ref == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        assert not find(objects, "Issuer") and list(certs) == [WEBHOOK_SVC]
    else:
        # Self-signed root -> CA Certificate -> CA Issuer -> serving Certificate.
        issuers = {i["metadata"]["name"]: i for i in find(objects, "Issuer")}
        ca_issuer = issuers[issuer_ref["name"]]
        assert issuer_ref["kind"] == "Issuer"
        ca_cert = [c for c in certs.values() if c["spec"].get("secretName") == ca_issuer["spec"]["ca"]["secretName"]]
        assert len(ca_cert) == 1 and ca_cert[0]["spec"]["isCA"] is True
        assert "selfSigned" in issuers[ca_cert[0]["spec"]["issuerRef"]["name"]]["spec"]
        for obj in list(certs.values()) + list(issuers.values()):
            assert obj["metadata"]["namespace"] == NAMESPACE


# ---------------------------------------------------------------- processes and flags


def test_webhook_runs_eargate_serve_with_the_agreed_flags(rendered):
    objects = rendered["default"]
    dep = deployment(objects, "webhook")
    rec = deployment(objects, "reconciler")
    writer = f"system:serviceaccount:{NAMESPACE}:{rec['spec']['template']['spec']['serviceAccountName']}"
    assert writer == default_status_writer()
    assert args_of(dep) == [
        "serve",
        "--listen=0.0.0.0:8443",
        "--tls-cert-file=/etc/eargate/tls/tls.crt",
        "--tls-key-file=/etc/eargate/tls/tls.key",
        "--metrics-listen=0.0.0.0:9090",
        f"--status-writer={writer}",
        "--rollout-by=eargate",
        "--log-format=json",
        "--shutdown-delay=5s",
    ]
    mounts = container(dep)["volumeMounts"]
    assert {"name": "tls", "mountPath": "/etc/eargate/tls", "readOnly": True} in mounts
    items = [i["path"] for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls" for i in v["secret"]["items"]]
    assert sorted(items) == ["tls.crt", "tls.key"]


def test_status_writer_follows_the_release(rendered):
    objects = render(name="gate", namespace="security")
    rec = deployment(objects, "reconciler")
    sa = rec["spec"]["template"]["spec"]["serviceAccountName"]
    one(objects, "ServiceAccount", sa)
    assert flag(args_of(deployment(objects, "webhook")), "status-writer") == [f"system:serviceaccount:security:{sa}"]


def test_reconciler_runs_eargate_reconcile_with_the_agreed_flags(rendered):
    dep = deployment(rendered["default"], "reconciler")
    args = args_of(dep)
    image = container(dep)["image"]
    assert args[0] == "reconcile"
    assert flag(args, "metrics-listen") == ["0.0.0.0:9090"]
    assert flag(args, "job-image") == [image]
    assert flag(args, "lease-namespace") == [NAMESPACE]
    assert flag(args, "lease-name") == [RECONCILER_SA]
    assert flag(args, "log-format") == ["json"]
    # Restart mode, and every replica's loaded config proven, unless the values say otherwise.
    assert flag(args, "reload") == ["restart"]
    assert flag(args, "prove-loaded-config") == ["true"]
    assert flag(args, "apiserver-container") == []
    # The storage scan runs with Kubermatic's defaults (built into eargate) unless set.
    for name in ["etcd-endpoints", "etcd-client-secret", "etcd-ca-secret", "scan-backoff", "scan-backoff-max"]:
        assert flag(args, name) == [], name
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container(dep)["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert dep["spec"]["replicas"] == 2


def test_job_image_and_names_are_configurable():
    objects = render(
        {
            "image": {"repository": "registry.example/eargate", "tag": "1.2.3"},
            "reconciler": {
                "jobImage": {"repository": "registry.example/eargate-job", "digest": "sha256:" + "ab" * 32},
                "apiserverDeployment": "kube-apiserver",
                "configSecret": "enc-config",
                "adminKubeconfigSecret": "admin-kc",
                "rolloutTimeout": "15m",
                "leaseName": "my-lease",
                "reload": "hot",
                "apiserverContainer": "kube-apiserver",
                "proveLoadedConfig": False,
                "storageScan": {
                    "etcdEndpoints": ["https://etcd-0.etcd.{namespace}.svc:2379", "https://etcd-1.etcd.{namespace}.svc:2379"],
                    "clientSecret": "etcd-client",
                    "clientCertKey": "tls.crt",
                    "clientKeyKey": "tls.key",
                    "caSecret": "etcd-ca",
                    "caKey": "ca.pem",
                    "backoff": "1m",
                    "backoffMax": "10m",
                },
            },
        }
    )
    dep = deployment(objects, "reconciler")
    args = args_of(dep)
    assert container(dep)["image"] == "registry.example/eargate:1.2.3"
    assert flag(args, "job-image") == ["registry.example/eargate-job@sha256:" + "ab" * 32]
    assert flag(args, "apiserver-deployment") == ["kube-apiserver"]
    assert flag(args, "config-secret") == ["enc-config"]
    assert flag(args, "admin-kubeconfig-secret") == ["admin-kc"]
    assert flag(args, "rollout-timeout") == ["15m"]
    assert flag(args, "lease-name") == ["my-lease"]
    assert flag(args, "reload") == ["hot"]
    assert flag(args, "apiserver-container") == ["kube-apiserver"]
    assert flag(args, "prove-loaded-config") == ["false"]
    assert flag(args, "etcd-endpoints") == ["https://etcd-0.etcd.{namespace}.svc:2379,https://etcd-1.etcd.{namespace}.svc:2379"]
    assert flag(args, "etcd-client-secret") == ["etcd-client"]
    assert flag(args, "etcd-client-cert-key") == ["tls.crt"]
    assert flag(args, "etcd-client-key-key") == ["tls.key"]
    assert flag(args, "etcd-ca-secret") == ["etcd-ca"]
    assert flag(args, "etcd-ca-key") == ["ca.pem"]
    assert flag(args, "scan-backoff") == ["1m"]
    assert flag(args, "scan-backoff-max") == ["10m"]
    role = one(objects, "Role")
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert named and all(r["resourceNames"] == ["my-lease"] for r in named)


def test_default_image_tag_is_the_app_version(rendered):
    """The default image is what `make image` builds: eargate:<Cargo version>."""
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    cargo_version = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
    assert app_version == cargo_version
    for comp in ("webhook", "reconciler"):
        assert container(deployment(rendered["default"], comp))["image"] == f"eargate:{app_version}"


# ---------------------------------------------------------------- shutdown


def drain_timeout_seconds() -> int:
    """`eargate serve`'s drain timeout (DEFAULT_DRAIN_TIMEOUT in the admission crate)."""
    src = (ROOT / "crates" / "admission" / "src" / "config.rs").read_text()
    m = re.search(r"pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs\((\d+)\);", src)
    assert m, "DEFAULT_DRAIN_TIMEOUT not found in crates/admission/src/config.rs"
    return int(m.group(1))


def duration_seconds(text: str) -> float:
    """A --shutdown-delay value the way eargate reads it: 15m, 90s, 1h30m, 500ms, or a bare
    number of seconds."""
    if re.fullmatch(r"\d+", text):
        return float(text)
    assert re.fullmatch(r"(\d+(ms|s|m|h))+", text), text
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * unit[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", text))


@pytest.mark.parametrize(
    "values, delay",
    [
        ({}, 5),
        ({"webhook": {"shutdownDelay": "0s"}}, 0),
        ({"webhook": {"shutdownDelay": "500ms"}}, 0.5),
        ({"webhook": {"shutdownDelay": "1500ms"}}, 1.5),
        ({"webhook": {"shutdownDelay": "20s"}}, 20),
        ({"webhook": {"shutdownDelay": "2m"}}, 120),
        ({"webhook": {"shutdownDelay": 7}}, 7),
        ({"webhook": {"shutdownDelay": "20s", "terminationGracePeriodSeconds": 31}}, 20),
        ({"webhook": {"shutdownDelay": "5s", "terminationGracePeriodSeconds": 120}}, 5),
    ],
)
def test_webhook_grace_period_outlasts_the_shutdown_delay_and_the_drain(values, delay):
    """After SIGTERM the webhook serves for the shutdown delay, then drains for up to the
    drain timeout: the kubelet must not SIGKILL it before both are over."""
    dep = deployment(render(values), "webhook")
    [given] = flag(args_of(dep), "shutdown-delay")
    assert duration_seconds(given) == delay
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert isinstance(grace, int)
    assert grace > duration_seconds(given) + drain_timeout_seconds(), (given, grace)
    wanted = values.get("webhook", {}).get("terminationGracePeriodSeconds")
    if wanted is not None:
        assert grace == wanted
    else:
        assert grace <= delay + drain_timeout_seconds() + 10, "no needlessly long grace period"


@pytest.mark.parametrize(
    "webhook, message",
    [
        ({"shutdownDelay": "1.5s"}, "webhook.shutdownDelay must be a duration"),
        ({"shutdownDelay": "5 seconds"}, "webhook.shutdownDelay must be a duration"),
        ({"shutdownDelay": "-1s"}, "webhook.shutdownDelay must be a duration"),
        ({"shutdownDelay": ""}, "webhook.shutdownDelay must be a duration"),
        ({"shutdownDelay": "20s", "terminationGracePeriodSeconds": 30}, "must be larger than webhook.shutdownDelay (20s) + the 10 s drain: at least 31"),
        ({"shutdownDelay": "5s", "terminationGracePeriodSeconds": 10}, "terminationGracePeriodSeconds (10) must be larger"),
        ({"terminationGracePeriodSeconds": "soon"}, "webhook.terminationGracePeriodSeconds must be a whole number"),
    ],
)
def test_shutdown_values_that_would_cut_reviews_off_are_refused(webhook, message):
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render({"webhook": webhook})


# ---------------------------------------------------------------- pods


def pod_specs(objects):
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in find(objects, "Deployment")]


@pytest.mark.parametrize("mode", list(MODES))
def test_pods_are_hardened(rendered, mode):
    specs = pod_specs(rendered[mode])
    assert specs
    for name, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["runAsUser"] != 0 and psc["runAsGroup"] != 0, name
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), (name, key)
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc.get("privileged") is not True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert "add" not in sc["capabilities"]
            for bound in ("requests", "limits"):
                assert set(c["resources"][bound]) >= {"cpu", "memory"}, (name, bound)


@pytest.mark.parametrize("mode", list(MODES))
def test_probes_hit_healthz_and_readyz(rendered, mode):
    objects = rendered[mode]
    web = container(deployment(objects, "webhook"))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = web[probe]["httpGet"]
        assert get["path"] == path and get["scheme"] == "HTTPS" and get["port"] == "https"
    assert {p["name"]: p["containerPort"] for p in web["ports"]} == {"https": 8443, "metrics": 9090}
    if mode == "gate-only":
        return
    rec = container(deployment(objects, "reconciler"))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = rec[probe]["httpGet"]
        assert get["path"] == path and get["port"] == "metrics" and get.get("scheme", "HTTP") == "HTTP"
    assert {p["name"]: p["containerPort"] for p in rec["ports"]} == {"metrics": 9090}


def test_webhook_has_no_kubernetes_api_access(rendered):
    objects = rendered["default"]
    dep = deployment(objects, "webhook")
    spec = dep["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    sa = one(objects, "ServiceAccount", spec["serviceAccountName"])
    assert sa["automountServiceAccountToken"] is False
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for binding in find(objects, kind):
            assert all(s["name"] != spec["serviceAccountName"] for s in binding["subjects"])


def test_webhook_is_highly_available(rendered):
    objects = rendered["default"]
    dep = deployment(objects, "webhook")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    pdbs = [p for p in find(objects, "PodDisruptionBudget") if p["spec"]["selector"]["matchLabels"] == selector]
    assert len(pdbs) == 1 and pdbs[0]["spec"]["minAvailable"] == 1
    spec = dep["spec"]["template"]["spec"]
    spread = {t["topologyKey"]: t for t in spec["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["labelSelector"]["matchLabels"] == selector
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert anti["topologyKey"] == "kubernetes.io/hostname" and anti["labelSelector"]["matchLabels"] == selector
    svc = one(objects, "Service", WEBHOOK_SVC)
    assert svc["spec"]["selector"] == selector


# ---------------------------------------------------------------- RBAC

EXPECTED_CLUSTER_RULES = {
    ("kubermatic.k8c.io", "clusters"): {"get", "list", "watch"},
    ("kubermatic.k8c.io", "clusters/status"): {"get", "patch", "update"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch", "update"},
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
    ("apps", "replicasets"): {"list", "watch"},
    ("", "pods"): {"list", "watch"},
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}


def grants(role: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                out.setdefault((group, res), set()).update(rule["verbs"])
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_rbac_has_no_wildcards(rendered, mode):
    for kind in ("Role", "ClusterRole"):
        for role in find(rendered[mode], kind):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                    assert not any("*" in v for v in rule.get(field, [])), (role["metadata"]["name"], rule)


def test_reconciler_rbac_is_exactly_what_it_needs(rendered):
    objects = rendered["default"]
    sa = deployment(objects, "reconciler")["spec"]["template"]["spec"]["serviceAccountName"]
    assert sa == RECONCILER_SA
    cr = one(objects, "ClusterRole")
    assert grants(cr) == EXPECTED_CLUSTER_RULES
    crb = one(objects, "ClusterRoleBinding")
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cr["metadata"]["name"]}
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert grants(role) == {("coordination.k8s.io", "leases"): {"get", "create", "update", "patch"}}
    for rule in role["rules"]:
        # Only create may go without a name: the Lease does not exist yet.
        assert rule["verbs"] == ["create"] or rule["resourceNames"] == [RECONCILER_SA]
    rb = one(objects, "RoleBinding")
    assert rb["roleRef"]["name"] == role["metadata"]["name"] and rb["roleRef"]["kind"] == "Role"
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


# ---------------------------------------------------------------- modes


def test_gate_only_mode_installs_just_the_gate(rendered):
    objects = rendered["gate-only"]
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == sorted(
        {"ServiceAccount", "Service", "PodDisruptionBudget", "Deployment", "Secret", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    )
    assert len(find(objects, "Deployment")) == 1
    assert flag(args_of(deployment(objects, "webhook")), "status-writer") == [SEED_STATUS_WRITER]
    # Kubermatic rolls configs out: the key-removal warning must not promise eargate's scan.
    assert flag(args_of(deployment(objects, "webhook")), "rollout-by") == ["other"]


def test_extra_status_writers_are_added_to_the_reconciler():
    objects = render({"webhook": {"statusWriters": [SEED_STATUS_WRITER]}})
    assert flag(args_of(deployment(objects, "webhook")), "status-writer") == [default_status_writer(), SEED_STATUS_WRITER]


def crd_file() -> dict:
    return yaml.safe_load((CHART / "files" / "crd-clusters.yaml").read_text())


def test_crd_is_installed_by_default_and_kept_on_uninstall(rendered):
    crd = one(rendered["default"], "CustomResourceDefinition", "clusters.kubermatic.k8c.io")
    assert crd["spec"] == crd_file()["spec"], "the rendered CRD must be the generated one, unchanged"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    spec = crd["spec"]
    assert spec["scope"] == "Cluster" and spec["group"] == "kubermatic.k8c.io"
    (version,) = spec["versions"]
    assert version["name"] == "v1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert schema["spec"]["x-kubernetes-preserve-unknown-fields"] is True
    assert schema["status"]["x-kubernetes-preserve-unknown-fields"] is True
    columns = {c["jsonPath"]: c for c in version["additionalPrinterColumns"]}
    assert ".status.encryption.phase" in columns and ".status.encryption.activeKey" in columns
    enc = schema["status"]["properties"]["encryption"]["properties"]
    assert enc["phase"]["enum"] == ["Pending", "EncryptionNeeded", "Active", "Failed"]


def test_crds_off_and_gate_only_install_no_crd(rendered):
    for mode in ("crds-off", "gate-only"):
        assert not find(rendered[mode], "CustomResourceDefinition")


def test_crd_can_be_dropped_on_uninstall_when_asked():
    crd = one(render({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


def test_service_monitor_scrapes_both_metrics_services(rendered):
    objects = rendered["service-monitor"]
    assert not find(rendered["default"], "ServiceMonitor")
    sm = one(objects, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    selected = [s for s in find(objects, "Service") if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    components = set()
    for svc in selected:
        ports = {p["name"]: p for p in svc["spec"]["ports"]}
        assert ports["metrics"]["targetPort"] == "metrics"
        components.add(svc["metadata"]["labels"]["app.kubernetes.io/component"])
    assert components == {"webhook", "reconciler"}
