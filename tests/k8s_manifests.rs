#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Kubernetes and Istio manifests in `k8s/` stay loadable and consistent:
//!
//! - every plugin config embedded anywhere (a `WasmPlugin`'s `pluginConfig`,
//!   an `EnvoyFilter`'s Wasm `configuration`, the Envoy bootstrap inside the
//!   gateway `ConfigMap`) parses with the filter's own parser, with exactly
//!   the environment variables that manifest hands to the Wasm VM;
//! - the gateway `ConfigMap` is what `llm-gateway render` makes of
//!   `k8s/gateway/config.yaml` (regenerate with `make k8s-render`), and the
//!   Deployment's config hash annotation matches it;
//! - names resolve: selectors select a workload of the same directory,
//!   ECDS filters have their extension config, `gateway.clusters` names are
//!   clusters Istio creates from a ServiceEntry port with TLS origination,
//!   VirtualServices bind existing Gateways, kustomizations list real files,
//!   and the Secret templates carry every key the VM reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use llm_gateway::render::{render, RenderOptions};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const WASM_SERVICE: &str = "type.googleapis.com/envoy.extensions.wasm.v3.WasmService";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

struct Doc {
    file: PathBuf,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
    fn at(&self) -> String {
        format!("{} ({} {})", self.file.display(), self.kind(), self.name())
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
}

fn yaml_docs(text: &str, file: &Path) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", file.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// Manifests grouped by directory (one deployable unit each), without the
/// gateway's LiteLLM-style `config.yaml`.
fn bundles() -> BTreeMap<PathBuf, Vec<Doc>> {
    let mut files = Vec::new();
    yaml_files(Path::new("k8s"), &mut files);
    let mut out: BTreeMap<PathBuf, Vec<Doc>> = BTreeMap::new();
    for file in files {
        if file.file_name().is_some_and(|n| n == "config.yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for value in yaml_docs(&text, &file) {
            assert!(
                value.get("kind").is_some() || file.ends_with("kustomization.yaml"),
                "{}: a document without `kind`",
                file.display()
            );
            let dir = file.parent().unwrap().to_path_buf();
            out.entry(dir).or_default().push(Doc {
                file: file.clone(),
                value,
            });
        }
    }
    assert!(out.len() >= 3, "expected k8s/gateway and two Istio setups");
    out
}

/// A plugin config found in a manifest, with the variables its VM gets.
struct Embedded {
    at: String,
    json: String,
    env: BTreeSet<String>,
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Every Wasm `PluginConfig` (an object with `root_id`, `vm_config` and a
/// StringValue `configuration`) anywhere below `v`.
fn plugin_configs(v: &Value, at: &str, out: &mut Vec<Embedded>) {
    match v {
        Value::Object(m) => {
            if let (Some(cfg), Some(vm)) = (m.get("configuration"), m.get("vm_config")) {
                if m.get("root_id").and_then(Value::as_str) == Some("llm_gateway")
                    || m.get("root_id").and_then(Value::as_str) == Some("llm_gateway_counter")
                {
                    assert_eq!(cfg["@type"], STRING_VALUE, "{at}: configuration type");
                    out.push(Embedded {
                        at: format!("{at} [{}]", m["root_id"].as_str().unwrap()),
                        json: cfg["value"].as_str().unwrap().to_string(),
                        env: strs(&vm["environment_variables"]["host_env_keys"]),
                    });
                }
            }
            m.values().for_each(|x| plugin_configs(x, at, out));
        }
        Value::Array(a) => a.iter().for_each(|x| plugin_configs(x, at, out)),
        _ => {}
    }
}

fn embedded(docs: &[Doc]) -> Vec<Embedded> {
    let mut out = Vec::new();
    for d in docs {
        match d.kind() {
            "WasmPlugin" => {
                let env = d.value["spec"]["vmConfig"]["env"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .inspect(|e| {
                                assert_eq!(e["valueFrom"], "HOST", "{}: env from the proxy", d.at())
                            })
                            .map(|e| e["name"].as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Embedded {
                    at: d.at(),
                    json: d.value["spec"]["pluginConfig"].to_string(),
                    env,
                });
            }
            "EnvoyFilter" => plugin_configs(&d.value, &d.at(), &mut out),
            "ConfigMap" => {
                for (key, text) in d.value["data"].as_object().into_iter().flatten() {
                    let text = text.as_str().unwrap();
                    let at = format!("{} data.{key}", d.at());
                    for v in yaml_docs(text, Path::new(&at)) {
                        plugin_configs(&v, &at, &mut out);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `os.environ/NAME` references in a plugin config.
fn env_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            if let Some(n) = s.strip_prefix("os.environ/") {
                out.insert(n.to_string());
            }
        }
        Value::Array(a) => a.iter().for_each(|x| env_refs(x, out)),
        Value::Object(m) => m.values().for_each(|x| env_refs(x, out)),
        _ => {}
    }
}

fn parse(e: &Embedded) -> llm_gateway::config::Config {
    let env = e.env.clone();
    let cfg = llm_gateway::pipeline::load_config(e.json.as_bytes(), &move |name: &str| {
        env.contains(name).then(|| format!("placeholder-{name}"))
    })
    .unwrap_or_else(|err| panic!("{}: the filter refuses its config: {err}", e.at));
    assert!(
        cfg.warnings.is_empty(),
        "{}: config warnings: {:?}",
        e.at,
        cfg.warnings
    );
    cfg
}

#[test]
fn every_embedded_plugin_config_parses_with_the_filters_parser() {
    let mut total = 0;
    for (dir, docs) in bundles() {
        let found = embedded(&docs);
        for e in &found {
            parse(e);
            // Nothing the VM does not receive, nothing received for nothing.
            let mut refs = BTreeSet::new();
            env_refs(&serde_json::from_str(&e.json).unwrap(), &mut refs);
            assert_eq!(
                refs, e.env,
                "{}: os.environ names vs the VM's environment",
                e.at
            );
        }
        if dir.ends_with("gateway") || dir.ends_with("sidecar") || dir.ends_with("mesh-gateway") {
            assert!(
                !found.is_empty(),
                "{}: no plugin config found",
                dir.display()
            );
        }
        total += found.len();
    }
    // gateway bootstrap (filter + counter service), sidecar EnvoyFilter and
    // two WasmPlugins, mesh-gateway EnvoyFilter.
    assert!(total >= 6, "only {total} embedded plugin configs found");
}

#[test]
fn wasmplugins_carry_the_same_config_as_the_envoyfilter() {
    for (dir, docs) in bundles() {
        let found = embedded(&docs);
        let filters: Vec<&Embedded> = found
            .iter()
            .filter(|e| e.at.contains("EnvoyFilter"))
            .collect();
        for w in found.iter().filter(|e| e.at.contains("WasmPlugin")) {
            assert_eq!(
                filters.len(),
                1,
                "{}: one EnvoyFilter to compare with",
                dir.display()
            );
            let a: Value = serde_json::from_str(&w.json).unwrap();
            let b: Value = serde_json::from_str(&filters[0].json).unwrap();
            assert_eq!(a, b, "{} drifted from {}", w.at, filters[0].at);
            assert_eq!(w.env, filters[0].env, "{}: VM environment", w.at);
        }
    }
}

fn find<'a>(docs: &'a [Doc], kind: &str) -> impl Iterator<Item = &'a Doc> + 'a {
    let kind = kind.to_string();
    docs.iter().filter(move |d| d.kind() == kind)
}

#[test]
fn gateway_configmap_is_the_rendering_of_config_yaml() {
    let docs = bundles().remove(Path::new("k8s/gateway")).unwrap();
    let cm = find(&docs, "ConfigMap")
        .find(|d| d.name() == "llm-gateway-envoy")
        .expect("ConfigMap llm-gateway-envoy");
    let text = cm.value["data"]["envoy.yaml"].as_str().unwrap();
    let committed: Value = serde_yaml_ng::from_str(text).unwrap();

    // The options tools/k8s_render.py used, as recorded on the ConfigMap.
    let args = cm.value["metadata"]["annotations"]["llm-gateway.io/render-args"]
        .as_str()
        .unwrap();
    let mut opts = RenderOptions::default();
    let mut it = args.split_whitespace();
    while let Some(flag) = it.next() {
        let v = it.next().unwrap();
        match flag {
            "--listen" => {
                let (a, p) = v.rsplit_once(':').unwrap();
                opts.listen_address = a.into();
                opts.listen_port = p.parse().unwrap();
            }
            "--admin-port" => opts.admin_port = v.parse().unwrap(),
            "--wasm" => opts.wasm_path = v.into(),
            f => panic!("render-args: unknown flag {f}"),
        }
    }
    let source: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string("k8s/gateway/config.yaml").unwrap())
            .unwrap();
    let rendered = render(&source, &opts).unwrap();
    assert!(
        committed == rendered,
        "k8s/gateway/configmap.yaml is stale: run `make k8s-render` (python3 tools/k8s_render.py)"
    );

    let deployment = find(&docs, "Deployment").next().unwrap();
    let hash = hex(&Sha256::digest(text.as_bytes()));
    assert_eq!(
        deployment.value["spec"]["template"]["metadata"]["annotations"]
            ["llm-gateway.io/config-sha256"],
        hash.as_str(),
        "the Deployment's config hash: run `make k8s-render`"
    );
    // The module path the bootstrap loads is where the Deployment mounts it.
    let wasm_dir = Path::new(&opts.wasm_path)
        .parent()
        .unwrap()
        .to_str()
        .unwrap();
    let mounts = &deployment.value["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == wasm_dir),
        "no volume mounted at {wasm_dir}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Labels of every pod template (Deployments, StatefulSets) in a bundle.
fn pod_labels(docs: &[Doc]) -> Vec<&serde_json::Map<String, Value>> {
    find(docs, "Deployment")
        .chain(find(docs, "StatefulSet"))
        .map(|d| {
            d.value["spec"]["template"]["metadata"]["labels"]
                .as_object()
                .unwrap()
        })
        .collect()
}

fn selects(selector: &Value, pods: &[&serde_json::Map<String, Value>]) -> bool {
    let want = selector.as_object().unwrap();
    !want.is_empty()
        && pods
            .iter()
            .any(|labels| want.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

#[test]
fn selectors_select_workloads_of_their_directory() {
    for (dir, docs) in bundles() {
        let pods = pod_labels(&docs);
        for d in &docs {
            let spec = &d.value["spec"];
            let selector = match d.kind() {
                "EnvoyFilter" => &spec["workloadSelector"]["labels"],
                "WasmPlugin" | "AuthorizationPolicy" => &spec["selector"]["matchLabels"],
                "Gateway" | "Service" => &spec["selector"],
                "PodDisruptionBudget" => &spec["selector"]["matchLabels"],
                _ => continue,
            };
            if d.kind() == "Service" && selector.is_null() {
                continue; // the sidecar setup's name-only Service
            }
            assert!(
                selects(selector, &pods),
                "{}: selects no workload in {}",
                d.at(),
                dir.display()
            );
        }
        for hpa in find(&docs, "HorizontalPodAutoscaler") {
            let target = hpa.value["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .unwrap();
            assert!(
                find(&docs, "Deployment").any(|d| d.name() == target),
                "{}",
                hpa.at()
            );
        }
    }
}

#[test]
fn envoyfilters_define_the_extension_config_their_filter_loads() {
    for (_, docs) in bundles() {
        for ef in find(&docs, "EnvoyFilter") {
            let patches = ef.value["spec"]["configPatches"].as_array().unwrap();
            let mut extensions = BTreeMap::new();
            for p in patches
                .iter()
                .filter(|p| p["applyTo"] == "EXTENSION_CONFIG")
            {
                assert_eq!(
                    p["patch"]["operation"],
                    "ADD",
                    "{}: Istio only ADDs extension configs",
                    ef.at()
                );
                let v = &p["patch"]["value"];
                assert_eq!(v["typed_config"]["@type"], WASM_FILTER, "{}", ef.at());
                let cfg = &v["typed_config"]["config"];
                assert_eq!(cfg["allow_on_headers_stop_iteration"], true, "{}", ef.at());
                assert_eq!(cfg["vm_config"]["vm_id"], "llm_gateway", "{}", ef.at());
                extensions.insert(v["name"].as_str().unwrap(), p["match"]["context"].clone());
            }
            let filters: Vec<&Value> = patches
                .iter()
                .filter(|p| p["applyTo"] == "HTTP_FILTER")
                .collect();
            assert_eq!(
                filters.len(),
                extensions.len(),
                "{}: one filter per extension",
                ef.at()
            );
            for p in filters {
                let v = &p["patch"]["value"];
                let name = v["name"].as_str().unwrap();
                let ctx = extensions.get(name).unwrap_or_else(|| {
                    panic!("{}: filter {name} has no EXTENSION_CONFIG", ef.at())
                });
                assert_eq!(&p["match"]["context"], ctx, "{}: contexts differ", ef.at());
                assert_eq!(
                    strs(&v["config_discovery"]["type_urls"]),
                    BTreeSet::from([WASM_FILTER.to_string()])
                );
                assert_eq!(
                    p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
                    "envoy.filters.http.router",
                    "{}: the filter goes right before the router",
                    ef.at()
                );
                assert_eq!(p["patch"]["operation"], "INSERT_BEFORE", "{}", ef.at());
                assert!(
                    p["match"]["listener"]["portNumber"].is_u64(),
                    "{}: scope it to the gateway port",
                    ef.at()
                );
            }
        }
    }
}

/// `outbound|PORT||HOST` -> (port, host).
fn istio_cluster(name: &str) -> Option<(u64, &str)> {
    let rest = name.strip_prefix("outbound|")?;
    let (port, rest) = rest.split_once('|')?;
    let host = rest.strip_prefix('|')?;
    Some((port.parse().ok()?, host))
}

#[test]
fn istio_clusters_exist_and_originate_tls() {
    for (dir, docs) in bundles() {
        let Some(ef) = find(&docs, "EnvoyFilter").next() else {
            continue;
        };
        let patches = ef.value["spec"]["configPatches"].as_array().unwrap();
        let filter = patches
            .iter()
            .find(|p| p["applyTo"] == "HTTP_FILTER")
            .unwrap();
        let context = filter["match"]["context"].as_str().unwrap();
        let listener_port = filter["match"]["listener"]["portNumber"].as_u64().unwrap();
        let found = embedded(&docs);
        let e = found.iter().find(|e| e.at.contains("EnvoyFilter")).unwrap();
        let cfg: Value = serde_json::from_str(&e.json).unwrap();
        let clusters = cfg["gateway"]["clusters"].as_object().unwrap();
        assert!(!clusters.is_empty());
        for (endpoint, cluster) in clusters {
            let (port, host) = istio_cluster(cluster.as_str().unwrap())
                .unwrap_or_else(|| panic!("{}: {cluster} is not an Istio outbound cluster", e.at));
            assert_eq!(
                endpoint, host,
                "{}: {endpoint} mapped to another host's cluster",
                e.at
            );
            // The ServiceEntry that makes the cluster, with an HTTP-level port.
            let se = find(&docs, "ServiceEntry")
                .find(|d| strs(&d.value["spec"]["hosts"]).contains(host))
                .unwrap_or_else(|| panic!("{}: no ServiceEntry for {host}", dir.display()));
            let se_port = se.value["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["number"] == port)
                .unwrap_or_else(|| panic!("{}: no port {port}", se.at()));
            // TLS origination for exactly that port.
            let dr = find(&docs, "DestinationRule")
                .find(|d| d.value["spec"]["host"] == host)
                .unwrap_or_else(|| panic!("{}: no DestinationRule for {host}", dir.display()));
            let tls = dr.value["spec"]["trafficPolicy"]["portLevelSettings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["port"]["number"] == port)
                .map(|s| &s["tls"])
                .unwrap_or_else(|| panic!("{}: no settings for port {port}", dr.at()));
            assert_eq!(tls["mode"], "SIMPLE", "{}", dr.at());
            assert_eq!(tls["sni"], host, "{}", dr.at());
            match context {
                // A sidecar re-matches routes within the listener's own port:
                // the provider host needs an HTTP port equal to it.
                "SIDECAR_OUTBOUND" => {
                    assert_eq!(
                        port, listener_port,
                        "{}: cluster port vs listener port",
                        e.at
                    );
                    assert_eq!(se_port["protocol"], "HTTP", "{}", se.at());
                    assert_eq!(se_port["targetPort"], 443, "{}", se.at());
                }
                // A gateway routes by VirtualServices bound to its Gateway.
                "GATEWAY" => {
                    let gateways: BTreeSet<String> = find(&docs, "Gateway")
                        .map(|g| g.name().to_string())
                        .collect();
                    let vs = find(&docs, "VirtualService")
                        .find(|v| strs(&v.value["spec"]["hosts"]).contains(host))
                        .unwrap_or_else(|| {
                            panic!("{}: no VirtualService for {host}", dir.display())
                        });
                    let bound = strs(&vs.value["spec"]["gateways"]);
                    assert!(
                        !bound.is_empty() && bound.is_subset(&gateways),
                        "{}: unknown gateway",
                        vs.at()
                    );
                    let dest = &vs.value["spec"]["http"][0]["route"][0]["destination"];
                    assert_eq!(dest["host"], host, "{}", vs.at());
                    assert_eq!(dest["port"]["number"], port, "{}", vs.at());
                    assert_eq!(
                        dr.value["spec"]["exportTo"],
                        serde_json::json!(["."]),
                        "{}: keep TLS origination out of app sidecars",
                        dr.at()
                    );
                    let server_ports: Vec<&Value> = find(&docs, "Gateway")
                        .flat_map(|g| g.value["spec"]["servers"].as_array().unwrap())
                        .map(|s| &s["port"]["number"])
                        .collect();
                    assert!(
                        server_ports.contains(&&Value::from(listener_port)),
                        "{}: no Gateway server on {listener_port}",
                        ef.at()
                    );
                }
                c => panic!("{}: unexpected context {c}", ef.at()),
            }
        }
        // WasmPlugins (where present) attach to the same port.
        for w in find(&docs, "WasmPlugin") {
            let ports: Vec<&Value> = w.value["spec"]["match"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|m| m["ports"].as_array().unwrap())
                .map(|p| &p["number"])
                .collect();
            assert_eq!(ports, vec![&Value::from(listener_port)], "{}", w.at());
        }
    }
}

#[test]
fn secrets_and_proxy_environments_carry_every_key_the_vm_reads() {
    for (dir, docs) in bundles() {
        let needed: BTreeSet<String> = embedded(&docs).into_iter().flat_map(|e| e.env).collect();
        if needed.is_empty() {
            continue;
        }
        let secret = find(&docs, "Secret").next().unwrap_or_else(|| {
            panic!(
                "{}: no Secret template (secret.example.yaml)",
                dir.display()
            )
        });
        let keys: BTreeSet<String> = secret.value["stringData"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert!(
            needed.is_subset(&keys),
            "{}: {:?} missing from {:?}",
            secret.at(),
            needed,
            keys
        );
        // The containers whose environment the VM inherits.
        for dep in find(&docs, "Deployment") {
            for c in dep.value["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
            {
                if c["name"] != "istio-proxy" && c["name"] != "envoy" {
                    continue;
                }
                let mut names: BTreeSet<String> = c["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["name"].as_str().unwrap().to_string())
                    .collect();
                for from in c["envFrom"].as_array().into_iter().flatten() {
                    assert_eq!(from["secretRef"]["name"], secret.name(), "{}", dep.at());
                    names.extend(keys.iter().cloned());
                }
                for e in c["env"].as_array().into_iter().flatten() {
                    if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                        assert_eq!(r["name"], secret.name(), "{}", dep.at());
                        assert!(keys.contains(r["key"].as_str().unwrap()), "{}", dep.at());
                    }
                }
                assert!(
                    needed.is_subset(&names),
                    "{}: the proxy lacks {:?}",
                    dep.at(),
                    needed
                );
            }
        }
    }
}

#[test]
fn kustomizations_list_existing_files_and_configmaps_are_mounted() {
    let mut files = Vec::new();
    yaml_files(Path::new("k8s"), &mut files);
    for k in files.iter().filter(|f| f.ends_with("kustomization.yaml")) {
        let dir = k.parent().unwrap();
        let v: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(k).unwrap()).unwrap();
        let listed = strs(&v["resources"]);
        assert!(!listed.is_empty(), "{}", k.display());
        for r in &listed {
            assert!(dir.join(r).is_file(), "{}: {r} does not exist", k.display());
        }
        // Every manifest of the directory is either deployed or explicitly
        // left out (templates, the WasmPlugin variant, the source config).
        for f in files.iter().filter(|f| f.parent() == Some(dir)) {
            let name = f.file_name().unwrap().to_str().unwrap();
            let optional = name.ends_with(".example.yaml")
                || name == "kustomization.yaml"
                || name == "config.yaml"
                || name == "wasmplugin.yaml";
            assert!(
                optional || listed.contains(name),
                "{}: {name} is not listed",
                k.display()
            );
        }
    }
    for (_, docs) in bundles() {
        let configmaps: BTreeSet<&str> = find(&docs, "ConfigMap").map(Doc::name).collect();
        for dep in find(&docs, "Deployment") {
            for vol in dep.value["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(name) = vol["configMap"]["name"].as_str() {
                    assert!(
                        configmaps.contains(name),
                        "{}: ConfigMap {name} missing",
                        dep.at()
                    );
                }
            }
        }
    }
}

#[test]
fn the_counter_service_shares_the_filters_vm() {
    let docs = bundles().remove(Path::new("k8s/gateway")).unwrap();
    let cm = find(&docs, "ConfigMap")
        .find(|d| d.name() == "llm-gateway-envoy")
        .unwrap();
    let boot: Value =
        serde_yaml_ng::from_str(cm.value["data"]["envoy.yaml"].as_str().unwrap()).unwrap();
    let service = &boot["bootstrap_extensions"][0]["typed_config"];
    assert_eq!(service["@type"], WASM_SERVICE);
    assert_eq!(service["singleton"], true);
    let mut filters = Vec::new();
    plugin_configs(&boot["static_resources"], "filter", &mut filters);
    assert_eq!(filters.len(), 1);
    assert_eq!(
        service["config"]["vm_config"]["vm_id"],
        boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["http_filters"][0]["typed_config"]["config"]["vm_config"]["vm_id"]
    );
}
