//! The Kubernetes manifests in `deploy/k8s` agree with the code: the ConfigMap is a valid
//! config, every `REPLICATOR__*` variable a Deployment sets names a real config key, every
//! secret the config references is set in every Deployment, the commands and probes are the
//! ones `replicator serve` answers, and KEDA scales on the queues the fleet really uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use replicator_common::Config;
use replicator_common::config::StorageValue;
use serde_yaml::Value;

fn k8s_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s")
}

/// Every document of every manifest, by kind.
fn documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let kind = v["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no kind", f.display()));
            out.push((kind.to_owned(), v));
        }
    }
    out
}

use serde::Deserialize;

fn config_text(docs: &[(String, Value)]) -> String {
    docs.iter()
        .find(|(k, v)| k == "ConfigMap" && v["metadata"]["name"] == "replicator-config")
        .and_then(|(_, v)| v["data"]["replicator.yaml"].as_str())
        .expect("ConfigMap replicator-config with replicator.yaml")
        .to_owned()
}

/// The environment variables the config reads secrets from.
fn secret_env_vars(c: &Config) -> BTreeSet<String> {
    let mut vars = BTreeSet::new();
    let mut add = |v: &StorageValue| {
        if let StorageValue::Secret(s) = v
            && let Some(e) = &s.env
        {
            vars.insert(e.clone());
        }
    };
    for v in c.source.storage.values().chain(c.target.storage.values()) {
        add(v);
    }
    if let Some(u) = &c.bus.url {
        add(u);
    }
    for w in &c.notifications.webhooks {
        add(&w.url);
        for s in w.bearer_token.iter().chain(&w.signing_secret) {
            add(&StorageValue::Secret(s.clone()));
        }
    }
    vars
}

#[test]
fn manifests_match_the_config_and_the_cli() {
    let docs = documents();
    let text = config_text(&docs);
    let config = Config::from_yaml(&text, std::iter::empty(), &[])
        .unwrap_or_else(|e| panic!("the ConfigMap's replicator.yaml is not a valid config: {e}"));
    assert_ne!(
        config.bus.backend,
        replicator_common::config::BusBackend::Memory,
        "a fleet needs a broker"
    );
    assert!(
        config.state.url.starts_with("postgres"),
        "a fleet shares PostgreSQL state"
    );
    let secrets = secret_env_vars(&config);
    assert!(secrets.contains("AMQP_URL"), "{secrets:?}");

    let deployments: BTreeMap<String, &Value> = docs
        .iter()
        .filter(|(k, _)| k == "Deployment")
        .map(|(_, v)| (v["metadata"]["name"].as_str().unwrap().to_owned(), v))
        .collect();
    let names: BTreeSet<&str> = deployments.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "replicator-cloner",
            "replicator-notifier",
            "replicator-planner",
            "replicator-reconciler"
        ])
    );
    for (name, d) in &deployments {
        let pod = &d["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let service = name.strip_prefix("replicator-").unwrap();
        assert_eq!(&args[..2], ["serve", service], "{name}");
        // The config path is where the ConfigMap is mounted.
        let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
        let mount = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "config")
            .unwrap()["mountPath"]
            .as_str()
            .unwrap();
        assert_eq!(config_path, format!("{mount}/replicator.yaml"), "{name}");
        assert_eq!(pod["volumes"][0]["configMap"]["name"], "replicator-config");
        // Probes hit the endpoints `serve` answers, on the port it listens on.
        let listen = args[args.iter().position(|a| *a == "--listen").unwrap() + 1];
        let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(
            c["ports"][0]["containerPort"].as_u64(),
            Some(port),
            "{name}"
        );
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        let annotations = &d["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/path"], "/metrics");
        assert_eq!(
            annotations["prometheus.io/port"].as_str(),
            Some(port.to_string().as_str())
        );

        // Environment: every secret the config references is provided, from a Secret;
        // every REPLICATOR__ override names a real key (the config still loads with it).
        let env: BTreeMap<&str, &Value> = c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e))
            .collect();
        for var in &secrets {
            let e = env.get(var.as_str()).unwrap_or_else(|| {
                panic!("{name} does not set {var}, which the config references")
            });
            assert!(
                e["valueFrom"]["secretKeyRef"]["name"].as_str().is_some(),
                "{name}: {var} must come from a Secret"
            );
        }
        assert!(
            env.contains_key("PGPASSWORD"),
            "{name}: PostgreSQL password"
        );
        let overrides: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k.starts_with("REPLICATOR__"))
            .map(|(k, e)| (k.to_string(), e["value"].as_str().unwrap_or("").to_owned()))
            .collect();
        if !overrides.is_empty() {
            Config::from_yaml(&text, overrides.clone(), &[])
                .unwrap_or_else(|e| panic!("{name}: {overrides:?} do not name config keys: {e}"));
        }
    }

    // Every Secret key a Deployment reads exists in the example Secret.
    let secret = docs
        .iter()
        .find(|(k, _)| k == "Secret")
        .map(|(_, v)| v)
        .expect("secret.example.yaml");
    let keys: BTreeSet<&str> = secret["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    for d in deployments.values() {
        for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()
            .unwrap()
        {
            if let Some(k) = e["valueFrom"]["secretKeyRef"]["key"].as_str() {
                assert!(
                    keys.contains(k),
                    "secret key {k} missing from secret.example.yaml"
                );
            }
        }
    }

    // KEDA: cloners and reconcilers scale on their own queues (RabbitMQ) or consumer groups
    // and topics (Kafka), named as the bus names them.
    let prefix = &config.bus.prefix;
    let mut scaled = BTreeSet::new();
    for (_, so) in docs.iter().filter(|(k, _)| k == "ScaledObject") {
        let target = so["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
        assert!(
            deployments.contains_key(target),
            "ScaledObject targets {target}"
        );
        let queue = match target {
            "replicator-cloner" => replicator_proto::names::CLONE_TASKS,
            "replicator-reconciler" => replicator_proto::names::RECONCILE_TASKS,
            other => panic!("only cloners and reconcilers autoscale, not {other}"),
        };
        let want = format!("{prefix}.{queue}");
        let t = &so["spec"]["triggers"][0];
        match t["type"].as_str().unwrap() {
            "rabbitmq" => {
                assert_eq!(t["metadata"]["queueName"].as_str(), Some(want.as_str()));
                assert_eq!(t["metadata"]["mode"], "QueueLength");
            }
            "kafka" => {
                assert_eq!(t["metadata"]["topic"].as_str(), Some(want.as_str()));
                assert_eq!(t["metadata"]["consumerGroup"].as_str(), Some(want.as_str()));
                let max = so["spec"]["maxReplicaCount"].as_i64().unwrap();
                assert!(
                    max <= i64::from(config.bus.partitions),
                    "more consumers than partitions would idle"
                );
            }
            other => panic!("unexpected trigger {other}"),
        }
        scaled.insert((target.to_owned(), t["type"].as_str().unwrap().to_owned()));
    }
    assert_eq!(scaled.len(), 4, "{scaled:?}");
}

/// The image the Deployments run is the one `deploy/Containerfile` builds and
/// `scripts/image.sh` tags: `ghcr.io/replicator-rs/replicator:<workspace version>`, running
/// as the non-root user the build file creates.
#[test]
fn the_deployments_run_the_image_the_build_file_makes() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("the workspace version");
    let want = format!("ghcr.io/replicator-rs/replicator:{version}");
    let mut deployments = 0;
    for (kind, doc) in documents() {
        if kind != "Deployment" {
            continue;
        }
        deployments += 1;
        let pod = &doc["spec"]["template"]["spec"];
        for c in pod["containers"].as_sequence().unwrap() {
            assert_eq!(c["image"].as_str(), Some(want.as_str()), "{doc:?}");
        }
    }
    assert!(deployments >= 4);
    let script = std::fs::read_to_string(root.join("scripts/image.sh")).unwrap();
    assert!(script.contains("image=\"ghcr.io/replicator-rs/replicator:$("));
    let build = std::fs::read_to_string(root.join("deploy/Containerfile")).unwrap();
    assert!(build.contains("\nUSER 10001:10001\n"), "a non-root user");
    assert!(build.contains("ca-certificates"));
    assert!(build.contains("AS build-source") && build.contains("AS runtime"));
}
