//! The deployment lint harness (`deploy/lint-deploy.sh`) must fail on what it
//! exists to catch: an overlay that does not render, a field or kind
//! Kubernetes does not have, a Containerfile finding, a misspelt or weakened
//! systemd unit. Each case also passes a corrected twin, so a harness that
//! failed on everything would not pass either. The edge unit's config example
//! and environment must be what `ouro-edge` actually reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use ouro_tests::{bin_path, repo_root};

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ouro-deploy-lint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the harness; its success and its report (stderr).
fn lint(args: &[&Path]) -> (bool, String) {
    let out = Command::new("bash").arg(repo_root().join("deploy/lint-deploy.sh")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn lint_k8s(dir: &Path) -> (bool, String) {
    lint(&[dir])
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: verifier
spec:
  replicas: 1
  selector:
    matchLabels: {app: verifier}
  template:
    metadata:
      labels: {app: verifier}
    spec:
      containers:
        - name: ouro-cloud
          image: localhost/ouro:dev
          args: [serve]
";

/// A kustomize tree: `base/` with `resources`, and one overlay per
/// (name, kustomization text).
fn k8s_tree(name: &str, resources: &[(&str, &str)], overlays: &[(&str, &str)]) -> Scratch {
    let s = Scratch::new(name);
    let files: Vec<&str> = resources.iter().map(|(f, _)| *f).collect();
    s.write("base/kustomization.yaml", &format!("resources: [{}]\n", files.join(", ")));
    for (file, text) in resources {
        s.write(&format!("base/{file}"), text);
    }
    for (overlay, text) in overlays {
        s.write(&format!("overlays/{overlay}/kustomization.yaml"), text);
    }
    s
}

const OVERLAY: &str = "resources: [../../base]\nnamePrefix: dev-\n";

#[test]
fn an_overlay_with_a_field_kubernetes_does_not_have_fails() {
    let patch = "resources: [../../base]\npatches:\n  - target: {kind: Deployment, name: verifier}\n    patch: |-\n      - op: add\n        path: /spec/template/spec/containers/0/livenesProbe\n        value: {grpc: {port: 7070}}\n";
    let good = k8s_tree("field-ok", &[("deployment.yaml", DEPLOYMENT)], &[("dev", OVERLAY)]);
    let (ok, report) = lint_k8s(&good.0);
    assert!(ok, "a valid overlay failed:\n{report}");
    assert!(report.contains("k8s overlay dev: renders, 1 resources"), "{report}");

    let bad = k8s_tree("field-bad", &[("deployment.yaml", DEPLOYMENT)], &[("dev", OVERLAY), ("production", patch)]);
    let (ok, report) = lint_k8s(&bad.0);
    assert!(!ok, "an overlay with an unknown field passed:\n{report}");
    assert!(report.contains("overlay production is not valid Kubernetes"), "{report}");
    assert!(report.contains("'livenesProbe' was unexpected"), "{report}");
    assert!(report.contains("k8s overlay dev: renders"), "the valid overlay is still checked:\n{report}");
}

#[test]
fn an_overlay_that_does_not_render_fails() {
    let s =
        k8s_tree("render", &[("deployment.yaml", DEPLOYMENT)], &[("dev", "resources: [../../base, ../../missing]\n")]);
    let (ok, report) = lint_k8s(&s.0);
    assert!(!ok, "{report}");
    assert!(report.contains("k8s overlay dev does not render"), "{report}");
}

#[test]
fn a_misspelt_built_in_kind_fails_and_a_custom_resource_passes() {
    let certificate = "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: verifier-tls}\nspec:\n  secretName: verifier-tls\n  dnsNames: [verifier]\n  issuerRef: {name: ca, kind: Issuer}\n";
    let ok_tree =
        k8s_tree("kind-ok", &[("deployment.yaml", DEPLOYMENT), ("certificate.yaml", certificate)], &[("dev", OVERLAY)]);
    let (ok, report) = lint_k8s(&ok_tree.0);
    assert!(ok, "a custom resource failed:\n{report}");
    assert!(report.contains("renders, 2 resources"), "{report}");

    let misspelt = DEPLOYMENT.replace("kind: Deployment", "kind: Deploymnt");
    let bad = k8s_tree("kind-bad", &[("deployment.yaml", &misspelt)], &[("dev", OVERLAY)]);
    let (ok, report) = lint_k8s(&bad.0);
    assert!(!ok, "a misspelt kind passed:\n{report}");
    assert!(
        report.contains("no Kubernetes 1.33.0 schema for a built-in kind") && report.contains("Deploymnt"),
        "{report}"
    );
}

#[test]
fn a_k8s_tree_is_skipped_only_while_it_does_not_exist() {
    let s = Scratch::new("absent");
    let (ok, report) = lint_k8s(&s.0.join("k8s"));
    assert!(ok, "{report}");
    assert!(report.contains("does not exist yet; skipped"), "{report}");

    s.write("k8s/base/kustomization.yaml", "resources: []\n");
    let (ok, report) = lint_k8s(&s.0.join("k8s"));
    assert!(!ok, "a tree without overlays passed:\n{report}");
    assert!(report.contains("has no overlays"), "{report}");
}

#[test]
fn a_containerfile_finding_fails() {
    let s = Scratch::new("containerfile");
    let good =
        s.write("good/Containerfile", "FROM docker.io/library/debian:bookworm-slim\nUSER 10001\nCMD [\"true\"]\n");
    let (ok, report) = lint(&["--containerfile".as_ref(), &good, &s.0.join("no-k8s")]);
    assert!(ok, "{report}");
    // An untagged base, unpinned and uncleaned apt, and root.
    let bad = s.write("bad/Containerfile", "FROM debian\nRUN apt-get update && apt-get install -y curl\nCMD true\n");
    let (ok, report) = lint(&["--containerfile".as_ref(), &bad, &s.0.join("no-k8s")]);
    assert!(!ok, "{report}");
    assert!(report.contains("container: hadolint") && report.contains("DL3006"), "{report}");
}

fn units_with(name: &str, edit: impl Fn(&str) -> String) -> Scratch {
    let s = Scratch::new(name);
    for unit in ["ouro-edge.service", "ouro-edge-models.service"] {
        let text = std::fs::read_to_string(repo_root().join("deploy/systemd").join(unit)).unwrap();
        let text = if unit == "ouro-edge.service" { edit(&text) } else { text };
        s.write(unit, &text);
    }
    s
}

#[test]
fn a_misspelt_or_weakened_unit_fails() {
    let absent = PathBuf::from("/nonexistent/k8s");
    let same = units_with("units-same", |t| t.to_string());
    let (ok, report) = lint(&["--systemd".as_ref(), &same.0, &absent]);
    assert!(ok, "the units copied unchanged failed:\n{report}");

    assert!(std::fs::read_to_string(same.0.join("ouro-edge.service")).unwrap().contains("\nProtectHome=yes\n"));
    let typo = units_with("units-typo", |t| t.replace("\nProtectHome=yes\n", "\nProtectHome=yess\n"));
    let (ok, report) = lint(&["--systemd".as_ref(), &typo.0, &absent]);
    assert!(!ok, "a bad value passed:\n{report}");
    assert!(report.contains("protect home value") && report.contains("yess"), "{report}");

    let key = units_with("units-key", |t| t.replace("\nProtectHome=yes\n", "\nProtectHme=yes\n"));
    let (ok, report) = lint(&["--systemd".as_ref(), &key.0, &absent]);
    assert!(!ok, "an unknown directive passed:\n{report}");
    assert!(report.contains("Unknown key") && report.contains("ProtectHme"), "{report}");

    // The sandbox gone: everything from its first line on, but [Install].
    let open = units_with("units-open", |t| {
        let start = t.find("# --- sandbox ---").unwrap();
        let install = t.find("[Install]").unwrap();
        format!("{}{}", &t[..start], &t[install..])
    });
    let (ok, report) = lint(&["--systemd".as_ref(), &open.0, &absent]);
    assert!(!ok, "an unsandboxed unit passed:\n{report}");
    assert!(report.contains("ouro-edge.service: exposure above"), "{report}");
}

/// `ouro-edge serve --config FILE` with a model that cannot exist: it fails,
/// and the failure says whether the file was accepted (the model is loaded
/// only after every option parsed).
fn serve_with_config(config: &Path) -> String {
    let out = Command::new(bin_path("ouro-edge"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["serve", "--config"])
        .arg(config)
        .args(["--model", "/nonexistent/drafter.gguf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_unit_config_example_is_one_ouro_edge_accepts() {
    let example = repo_root().join("deploy/systemd/edge.toml");
    let err = serve_with_config(&example);
    assert!(err.contains("/nonexistent/drafter.gguf"), "edge.toml was refused before the model:\n{err}");

    let s = Scratch::new("edge-toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let typo = s.write("edge.toml", &text.replace("fallback = ", "falback = "));
    let err = serve_with_config(&typo);
    assert!(err.contains("unknown option `falback`"), "{err}");
    let bad = s.write("bad.toml", &text.replace("transport = \"grpc\"", "transport = \"pigeon\""));
    let err = serve_with_config(&bad);
    assert!(err.contains("pigeon") && !err.contains("/nonexistent/drafter.gguf"), "{err}");
}

/// Every `OURO_*` name a `"…"` literal in these sources.
fn names_read(dirs: &[&str]) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.extend(text.split("\"OURO_").skip(1).filter_map(|rest| {
                    let name = rest.split('"').next()?;
                    name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_').then(|| format!("OURO_{name}"))
                }));
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(&repo_root().join(d), &mut out);
    }
    out
}

#[test]
fn every_variable_the_units_set_is_one_ouro_reads() {
    let read = names_read(&["edge/src", "config/src"]);
    assert!(
        read.iter().any(|n| n == "OURO_CLOUD_TOKEN_FILE") && read.iter().any(|n| n == "OURO_MODEL_DIR"),
        "{read:?}"
    );
    let dir = repo_root().join("deploy/systemd");
    let mut set = Vec::new();
    for file in ["ouro-edge.service", "ouro-edge-models.service", "edge.env"] {
        for line in std::fs::read_to_string(dir.join(file)).unwrap().lines() {
            let line = line.trim_start_matches('#');
            let assignments = line.strip_prefix("Environment=").unwrap_or(line);
            for a in assignments.split_whitespace() {
                if let Some((name, _)) = a.split_once('=').filter(|(n, _)| n.starts_with("OURO_")) {
                    set.push((file, name.to_string()));
                }
            }
        }
    }
    assert!(set.len() >= 8, "{set:?}");
    let unknown: Vec<_> = set.iter().filter(|(_, n)| !read.contains(n)).collect();
    assert!(unknown.is_empty(), "variables ouro-edge never reads: {unknown:?}");
}
