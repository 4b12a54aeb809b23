//! Packaging for a cluster (issue 14): `deploy/build.sh`, the `Dockerfile` and the
//! Kubernetes manifests in `deploy/k8s/`, checked without Docker or a cluster:
//! - every manifest against the Kubernetes API schemas of two releases, strictly (an
//!   unknown field is an error), by `kubernetes-validate` (PyPI, pinned in tests/run.sh;
//!   it ships the schemas, so this runs offline), which must also refuse broken copies;
//! - what no schema sees: the flags and variables the built binary really has, probe
//!   paths, ports, selectors, Secret keys, the GPU variant against the CPU Deployment,
//!   the Dockerfile running deploy/build.sh and taking what it stages;
//! - `deploy/build.sh --no-build` staging this test's own build into a bundle that runs.
//!
//! A missing kubernetes-validate fails the test rather than skipping it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The pinned version tests/run.sh installs.
const KUBERNETES_VALIDATE: &str = "1.37.0";
/// The Kubernetes releases whose schemas the manifests must pass: an older one still in
/// use and the newest kubernetes-validate ships.
const KUBERNETES: [&str; 2] = ["1.30.0", "1.37.0"];
/// Files in deploy/k8s applied on their own, not by kustomization.yaml.
const APPLIED_SEPARATELY: [&str; 3] = ["secret.example.yaml", "job-migrate.yaml", "deployment-gpu.yaml"];
/// Variables that are not drscreen's own settings but are read by it or its libraries.
const OTHER_ENV: [&str; 7] =
    ["AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RUST_LOG", "ORT_DYLIB_PATH", "PATH"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drscreen"))
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The built binary's help, with no DRSCREEN_* variables to show as values.
fn help(args: &[&str]) -> String {
    let out = run(Command::new(bin()).args(args).arg("--help").env_clear());
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// What `--help` of the built binary offers: each flag with its help entry, every
/// `[env: NAME=` variable, and the top-level subcommands.
struct Cli {
    serve_flags: BTreeMap<String, String>,
    env: BTreeSet<String>,
    commands: BTreeSet<String>,
}

fn cli() -> Cli {
    let serve = help(&["serve"]);
    let mut serve_flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in serve.lines() {
        let trimmed = line.trim_start();
        let option = trimmed.strip_prefix("-h, ").or(trimmed.strip_prefix("-V, ")).unwrap_or(trimmed);
        if let Some(flag) = option.strip_prefix("--") {
            let name = flag.split(' ').next().unwrap().to_string();
            serve_flags.insert(name.clone(), line.to_string());
            current = Some(name);
        } else if let Some(name) = &current {
            serve_flags.get_mut(name).unwrap().push_str(line);
        }
    }
    assert!(serve_flags.contains_key("listen") && serve_flags.contains_key("provider"), "no flags read from:\n{serve}");
    let top = help(&[]);
    let env = top.split("[env: ").skip(1).map(|s| s.split('=').next().unwrap().to_string()).collect::<BTreeSet<_>>();
    assert!(env.contains("DRSCREEN_LISTEN"), "no variables read from:\n{top}");
    let commands = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect::<BTreeSet<_>>();
    assert!(commands.contains("serve"), "no commands read from:\n{top}");
    Cli { serve_flags, env, commands }
}

/// Fails (never skips) when kubernetes-validate is missing; notes a version other than the pin.
fn kubernetes_validate() -> Command {
    let probe = Command::new("python3").args(["-c", "import kubernetes_validate.version as v; print(v.__version__)"]).output();
    let version = match probe {
        Ok(out) if out.status.success() => text(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "kubernetes-validate is not installed for python3 (tests/run.sh installs it: python3 -m pip install \"kubernetes-validate=={KUBERNETES_VALIDATE}\"): {}",
            text(&out.stderr).trim()
        ),
        Err(e) => {
            panic!("python3 is needed to run kubernetes-validate ({e}); tests/run.sh installs kubernetes-validate=={KUBERNETES_VALIDATE}")
        }
    };
    if version != KUBERNETES_VALIDATE {
        eprintln!("note: kubernetes-validate {version} is installed; tests/run.sh pins {KUBERNETES_VALIDATE}");
    }
    let mut command = Command::new("python3");
    command.args(["-m", "kubernetes_validate", "--strict"]);
    for version in KUBERNETES {
        command.args(["-k", version]);
    }
    command
}

/// Every YAML file in deploy/k8s, by file name.
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/k8s"))
        .expect("deploy/k8s")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// One YAML document of a manifest file, as JSON.
struct Doc {
    file: String,
    value: Value,
}

/// The documents of deploy/k8s, read by PyYAML (which kubernetes-validate brings along).
fn manifests() -> Vec<Doc> {
    kubernetes_validate();
    let script = "import json, sys, yaml\njson.dump([[f, d] for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d is not None], sys.stdout)";
    let out = run(Command::new("python3").args(["-c", script]).args(manifest_files()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs: Vec<(String, Value)> = serde_json::from_slice(&out.stdout).unwrap();
    docs.into_iter().map(|(f, value)| Doc { file: file_name(Path::new(&f)), value }).collect()
}

fn find<'a>(docs: &'a [Doc], file: &str, kind: &str) -> Vec<&'a Value> {
    let found: Vec<&Value> = docs.iter().filter(|d| d.file == file && d.value["kind"] == kind).map(|d| &d.value).collect();
    assert!(!found.is_empty(), "no {kind} in deploy/k8s/{file}");
    found
}

fn one<'a>(docs: &'a [Doc], file: &str, kind: &str) -> &'a Value {
    let found = find(docs, file, kind);
    assert_eq!(found.len(), 1, "one {kind} in {file}");
    found[0]
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object().unwrap_or_else(|| panic!("not a label map: {v}")).iter().map(|(k, v)| (k.clone(), s(v).to_string())).collect()
}

/// A selector matches a pod when each of its labels is on the pod.
fn selects(selector: &BTreeMap<String, String>, pod: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v))
}

fn only_container(pod_spec: &Value) -> &Value {
    let containers = pod_spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{pod_spec}");
    &containers[0]
}

/// `--name=value` arguments as (name, value); every argument must have that form.
fn flags(args: &[Value]) -> Vec<(String, String)> {
    args.iter()
        .map(|a| {
            let (name, value) =
                s(a).strip_prefix("--").and_then(|f| f.split_once('=')).unwrap_or_else(|| panic!("{a} is not --flag=value"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// Environment variable names must be the binary's (or pending) or a known other one.
fn check_env_name(cli: &Cli, name: &str, whose: &str) {
    let known = if name.starts_with("DRSCREEN_") { cli.env.contains(name) } else { OTHER_ENV.contains(&name) };
    assert!(known, "{whose}: {name} is neither a variable `drscreen --help` lists nor one of {OTHER_ENV:?}");
}

/// What a pod of the server Deployment and of the migration Job have in common: non-root,
/// read-only root filesystem with emptyDir scratch, variables from the ConfigMap and
/// the Secret the example defines, only known variable names.
fn check_pod(docs: &[Doc], cli: &Cli, file: &str, pod: &Value, data_dir: &str) {
    let secret = one(docs, "secret.example.yaml", "Secret");
    let config_map = one(docs, "configmap.yaml", "ConfigMap");
    let c = only_container(pod);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{file}");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{file}");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{file}");
    let scratch: BTreeSet<&str> =
        pod["volumes"].as_array().unwrap().iter().filter(|v| v["emptyDir"].is_object()).map(|v| s(&v["name"])).collect();
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"].as_array().unwrap().iter().map(|m| (s(&m["mountPath"]), s(&m["name"]))).collect();
    for dir in [data_dir, "/tmp"] {
        let volume = mounts.get(dir).unwrap_or_else(|| panic!("{file}: {dir} is not mounted (the root filesystem is read-only)"));
        assert!(scratch.contains(volume), "{file}: {dir} is not an emptyDir");
    }
    for from in c["envFrom"].as_array().unwrap() {
        assert_eq!(from["configMapRef"]["name"], config_map["metadata"]["name"], "{file}: {from}");
    }
    for var in c["env"].as_array().unwrap() {
        let name = s(&var["name"]);
        check_env_name(cli, name, file);
        let secret_ref = &var["valueFrom"]["secretKeyRef"];
        if secret_ref.is_null() {
            continue;
        }
        assert_eq!(secret_ref["name"], secret["metadata"]["name"], "{file}: {name} reads another Secret");
        let key = s(&secret_ref["key"]);
        assert!(secret["stringData"].get(key).is_some(), "{file}: {name} reads key {key}, which secret.example.yaml does not define");
    }
}

/// Each schema passes at both releases, and broken copies of the Deployment are refused.
#[test]
fn manifests_pass_the_kubernetes_schemas() {
    let files: Vec<PathBuf> = manifest_files().into_iter().filter(|f| file_name(f) != "kustomization.yaml").collect();
    let out = run(kubernetes_validate().args(&files));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "kubernetes-validate refused a manifest:\n{stdout}{}", text(&out.stderr));
    // A kind without a schema is only a warning there: every document must have passed.
    let docs = manifests().into_iter().filter(|d| d.file != "kustomization.yaml").count();
    let passed = stdout.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert_eq!(passed, docs * KUBERNETES.len(), "not every document was validated:\n{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let deployment = std::fs::read_to_string(root().join("deploy/k8s/deployment.yaml")).unwrap();
    let broken = [
        ("misspelt.yaml", deployment.replace("readinessProbe:", "readynessProbe:"), "'readynessProbe' was unexpected"),
        ("mistyped.yaml", deployment.replace("containerPort: 8080", "containerPort: http"), "'http' is not of type 'integer'"),
        ("incomplete.yaml", deployment.replace("  selector:\n", "  notSelector:\n"), "'selector' is a required property"),
    ];
    for (name, yaml, _) in &broken {
        assert_ne!(yaml, &deployment, "{name} is not broken");
        std::fs::write(dir.path().join(name), yaml).unwrap();
    }
    let out = run(kubernetes_validate().args(broken.iter().map(|(name, _, _)| dir.path().join(name))));
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "broken manifests passed:\n{stdout}");
    for (name, _, error) in broken {
        let refused = stdout.lines().filter(|l| l.starts_with("ERROR") && l.contains(name) && l.contains(error)).count();
        assert_eq!(refused, KUBERNETES.len(), "{name} not refused with {error} at every release:\n{stdout}");
    }
}

/// Cross-references no schema checks: against the built binary's --help and between files.
#[test]
fn manifests_agree_with_the_binary_and_each_other() {
    let cli = cli();
    let docs = manifests();

    // kustomization.yaml applies everything except the files applied on their own.
    let kustomization = one(&docs, "kustomization.yaml", "Kustomization");
    let listed: BTreeSet<&str> = kustomization["resources"].as_array().unwrap().iter().map(s).collect();
    let files: BTreeSet<String> = manifest_files().iter().map(|f| file_name(f)).collect();
    let expected: BTreeSet<&str> =
        files.iter().map(String::as_str).filter(|f| *f != "kustomization.yaml" && !APPLIED_SEPARATELY.contains(f)).collect();
    assert_eq!(listed, expected, "kustomization.yaml resources");
    for f in APPLIED_SEPARATELY {
        assert!(files.contains(f), "{f} missing");
    }

    let deployment = one(&docs, "deployment.yaml", "Deployment");
    let name = s(&deployment["metadata"]["name"]);
    let pod_labels = labels(&deployment["spec"]["template"]["metadata"]["labels"]);
    let image = format!("drscreen:{}", env!("CARGO_PKG_VERSION"));
    for file in ["deployment.yaml", "deployment-gpu.yaml"] {
        let d = one(&docs, file, "Deployment");
        assert_eq!(s(&d["metadata"]["name"]), name, "{file}: the GPU variant replaces the CPU Deployment");
        assert!(d["spec"]["replicas"].as_u64().unwrap() >= 2, "{file}: redundant replicas");
        let template_labels = labels(&d["spec"]["template"]["metadata"]["labels"]);
        assert_eq!(template_labels, pod_labels, "{file}");
        assert!(selects(&labels(&d["spec"]["selector"]["matchLabels"]), &template_labels), "{file}: selector");
        let pod = &d["spec"]["template"]["spec"];
        let c = only_container(pod);
        assert!(s(&c["image"]).starts_with(&image), "{file}: image {} is not {image}", c["image"]);

        // `drscreen serve` with flags the binary has, in values it accepts.
        assert_eq!(c["command"], serde_json::json!(["drscreen"]), "{file}");
        let args = c["args"].as_array().unwrap();
        assert_eq!(args[0], "serve", "{file}");
        let flags: BTreeMap<String, String> = flags(&args[1..]).into_iter().collect();
        for (flag, value) in &flags {
            let entry = cli.serve_flags.get(flag).unwrap_or_else(|| panic!("{file}: --{flag} is not a flag of `drscreen serve --help`"));
            if let Some(values) = entry.split("[possible values: ").nth(1) {
                let values: Vec<&str> = values.split(']').next().unwrap().split(", ").collect();
                assert!(values.contains(&value.as_str()), "{file}: --{flag}={value} is not one of {values:?}");
            }
        }

        // Bound to every address, on the ports the pod declares and the probes use.
        let ports: BTreeMap<&str, u64> =
            c["ports"].as_array().unwrap().iter().map(|p| (s(&p["name"]), p["containerPort"].as_u64().unwrap())).collect();
        let listen = &flags["listen"];
        assert!(listen.starts_with("0.0.0.0:"), "{file}: --listen={listen} is not reachable from outside the pod");
        assert_eq!(Some(listen.rsplit(':').next().unwrap().parse::<u64>().unwrap()), ports.get("http").copied(), "{file}: http port");
        assert_eq!(flags["dicom-bind"], "0.0.0.0", "{file}");
        assert_eq!(Some(flags["dicom-port"].parse::<u64>().unwrap()), ports.get("dicom").copied(), "{file}: dicom port");
        for (probe, path) in [("startupProbe", "/healthz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
            assert_eq!(c[probe]["httpGet"]["path"], path, "{file}: {probe}");
            assert_eq!(c[probe]["httpGet"]["port"], "http", "{file}: {probe}");
        }
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(c["resources"][kind][resource].is_string(), "{file}: no {kind}.{resource}");
            }
        }
        check_pod(&docs, &cli, file, pod, &flags["data-dir"]);
    }

    // The GPU variant is the CPU Deployment but for its marked differences.
    let gpu = one(&docs, "deployment-gpu.yaml", "Deployment");
    let gc = only_container(&gpu["spec"]["template"]["spec"]);
    assert_eq!(gc["resources"]["limits"]["nvidia.com/gpu"], 1);
    assert!(gc["args"].as_array().unwrap().contains(&"--provider=cuda".into()), "{}", gc["args"]);
    assert!(gpu["spec"]["template"]["spec"]["nodeSelector"].is_object());
    let strip = |d: &Value| {
        let mut d = d.clone();
        let pod = &mut d["spec"]["template"]["spec"];
        let pod = pod.as_object_mut().unwrap();
        pod.remove("nodeSelector");
        pod.remove("tolerations");
        let c = &mut pod.get_mut("containers").unwrap()[0];
        let c = c.as_object_mut().unwrap();
        for key in ["image", "resources"] {
            c.remove(key);
        }
        c["startupProbe"].as_object_mut().unwrap().remove("failureThreshold");
        let args = c["args"].as_array_mut().unwrap();
        args.retain(|a| !s(a).starts_with("--provider=") && !s(a).starts_with("--max-batch="));
        d
    };
    assert_eq!(strip(gpu), strip(deployment), "deployment-gpu.yaml drifted from deployment.yaml beyond its GPU changes");

    // The migration Job: same image, `drscreen migrate`, its pods outside every selector.
    let job = one(&docs, "job-migrate.yaml", "Job");
    let job_pod = &job["spec"]["template"]["spec"];
    let jc = only_container(job_pod);
    assert_eq!(jc["image"], image.as_str(), "job-migrate.yaml image");
    assert_eq!(jc["command"], serde_json::json!(["drscreen"]));
    assert_eq!(jc["args"], serde_json::json!(["migrate"]));
    assert!(cli.commands.contains("migrate"), "{:?}", cli.commands);
    check_pod(&docs, &cli, "job-migrate.yaml", job_pod, "/var/lib/drscreen");
    let job_labels = labels(&job["spec"]["template"]["metadata"]["labels"]);

    // Services, PDB and HPA point at the server pods, and only at them.
    let container_ports = &only_container(&deployment["spec"]["template"]["spec"])["ports"];
    let mut targets = BTreeSet::new();
    for svc in find(&docs, "service.yaml", "Service") {
        let selector = labels(&svc["spec"]["selector"]);
        assert!(selects(&selector, &pod_labels), "Service {} does not select the server pods", svc["metadata"]["name"]);
        assert!(!selects(&selector, &job_labels), "Service {} selects the migration Job", svc["metadata"]["name"]);
        for port in svc["spec"]["ports"].as_array().unwrap() {
            let target = &port["targetPort"];
            let declared = container_ports.as_array().unwrap().iter().find(|p| p["name"] == *target || p["containerPort"] == *target);
            let declared =
                declared.unwrap_or_else(|| panic!("Service {}: targetPort {target} is no container port", svc["metadata"]["name"]));
            targets.insert(s(&declared["name"]).to_string());
        }
    }
    assert_eq!(targets, BTreeSet::from(["http".to_string(), "dicom".to_string()]), "a Service for HTTP and one for DICOM");
    let pdb = one(&docs, "pdb.yaml", "PodDisruptionBudget");
    assert!(selects(&labels(&pdb["spec"]["selector"]["matchLabels"]), &pod_labels), "PDB selector");
    assert!(!selects(&labels(&pdb["spec"]["selector"]["matchLabels"]), &job_labels), "PDB selects the Job");
    let hpa = one(&docs, "hpa.yaml", "HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["scaleTargetRef"], serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": name}));
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");

    // Non-secret settings: known variables only, nothing secret-looking.
    let config_map = one(&docs, "configmap.yaml", "ConfigMap");
    for key in config_map["data"].as_object().unwrap().keys() {
        check_env_name(&cli, key, "configmap.yaml");
        assert!(!key.contains("SECRET") && !key.contains("DATABASE_URL"), "configmap.yaml: {key} belongs in the Secret");
    }
    let secret = one(&docs, "secret.example.yaml", "Secret");
    for value in secret["stringData"].as_object().unwrap().values() {
        assert!(s(value).contains("CHANGE-ME"), "secret.example.yaml holds a value that is not a placeholder: {value}");
    }
}

/// One Dockerfile instruction (continuation lines joined) and the stage it belongs to.
struct Instruction {
    stage: usize,
    keyword: String,
    rest: String,
}

fn dockerfile() -> Vec<Instruction> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                if !current.trim().is_empty() {
                    joined.push(std::mem::take(&mut current));
                }
                current.clear();
            }
        }
    }
    let mut stage = 0;
    joined
        .iter()
        .map(|l| {
            let (keyword, rest) = l.trim().split_once(char::is_whitespace).unwrap();
            if keyword == "FROM" {
                stage += 1;
            }
            Instruction { stage, keyword: keyword.to_string(), rest: rest.split_whitespace().collect::<Vec<_>>().join(" ") }
        })
        .collect()
}

/// The runtime stage's `ENV` variables.
fn dockerfile_env(instructions: &[Instruction]) -> BTreeMap<String, String> {
    let last = instructions.last().unwrap().stage;
    let env = instructions.iter().filter(|i| i.stage == last && i.keyword == "ENV");
    env.flat_map(|i| {
        i.rest.split(' ').map(|kv| kv.split_once('=').unwrap()).map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
    })
    .collect()
}

/// The Dockerfile builds with deploy/build.sh, copies what it staged, and runs the
/// server as the manifests expect (user, ports, health check, entry point).
#[test]
fn dockerfile_runs_build_sh_and_matches_the_manifests() {
    let cli = cli();
    let instructions = dockerfile();
    let from: Vec<&Instruction> = instructions.iter().filter(|i| i.keyword == "FROM").collect();
    assert_eq!(from.len(), 2, "multi-stage: a builder and the runtime");
    assert!(from[0].rest.ends_with(" AS builder"), "{}", from[0].rest);
    assert!(from[1].rest == "debian:12-slim" || from[1].rest == "debian:bookworm-slim", "runtime stage: {}", from[1].rest);

    let build = instructions.iter().find(|i| i.stage == 1 && i.keyword == "RUN" && i.rest.contains("deploy/build.sh"));
    let build = build.expect("the builder stage runs deploy/build.sh");
    let words: Vec<&str> = build.rest.split(' ').collect();
    let at = words.iter().position(|w| *w == "deploy/build.sh").unwrap();
    assert_eq!(words[at + 1..], ["--profile", "release", "--out", "/stage"], "{}", build.rest);
    let copy = instructions.iter().find(|i| i.stage == 2 && i.keyword == "COPY").expect("COPY in the runtime stage");
    assert_eq!(copy.rest, "--from=builder /stage /opt/drscreen", "the runtime stage takes the staged folder");

    let runtime =
        |keyword: &str| instructions.iter().filter(|i| i.stage == 2 && i.keyword == keyword).map(|i| i.rest.as_str()).collect::<Vec<_>>();
    assert_eq!(runtime("ENTRYPOINT"), [r#"["drscreen", "serve"]"#]);
    let env = dockerfile_env(&instructions);
    for name in env.keys() {
        check_env_name(&cli, name, "Dockerfile");
    }
    assert_eq!(env["DRSCREEN_LISTEN"], "0.0.0.0:8080");
    assert_eq!(env["DRSCREEN_DICOM_BIND"], "0.0.0.0");

    // The image serves where the Deployment expects, as the user the pods run as.
    let docs = manifests();
    let pod = &one(&docs, "deployment.yaml", "Deployment")["spec"]["template"]["spec"];
    let ports: BTreeSet<String> = only_container(pod)["ports"].as_array().unwrap().iter().map(|p| p["containerPort"].to_string()).collect();
    let exposed: BTreeSet<String> = runtime("EXPOSE").iter().flat_map(|r| r.split(' ')).map(str::to_string).collect();
    assert_eq!(exposed, ports, "EXPOSE and the Deployment's container ports");
    assert!(exposed.contains(env["DRSCREEN_LISTEN"].rsplit(':').next().unwrap()) && exposed.contains(&env["DRSCREEN_DICOM_PORT"]));
    assert_eq!(runtime("USER"), [format!("{0}:{1}", pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"])]);
    let healthcheck = runtime("HEALTHCHECK").join(" ");
    assert!(healthcheck.contains("CMD curl -fsS") && healthcheck.contains("http://127.0.0.1:8080/healthz"), "{healthcheck}");
    let installs = runtime("RUN").join(" ");
    assert!(installs.contains("apt-get install") && installs.contains(" curl "), "curl is installed for HEALTHCHECK: {installs}");
}

/// `deploy/build.sh --no-build` stages this test's own build; the bundle runs, and the
/// paths the Dockerfile sets point into it.
#[test]
fn build_script_stages_a_bundle_that_runs() {
    let bin = bin();
    let profile_dir = bin.parent().unwrap();
    let profile = match file_name(profile_dir).as_str() {
        "debug" => "dev".to_string(),
        other => other.to_string(),
    };
    let out = tempfile::tempdir().unwrap();
    let stage = out.path().join("stage");
    let result = run(Command::new(root().join("deploy/build.sh"))
        .args(["--profile", &profile, "--no-build", "--out"])
        .arg(&stage)
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap()));
    assert!(result.status.success(), "deploy/build.sh failed:\n{}{}", text(&result.stdout), text(&result.stderr));

    let staged = stage.join("bin/drscreen");
    assert_eq!(std::fs::metadata(&staged).unwrap().len(), std::fs::metadata(&bin).unwrap().len(), "the staged binary is this build");
    let version = run(Command::new(&staged).arg("--version"));
    assert_eq!(text(&version.stdout).trim(), format!("drscreen {}", env!("CARGO_PKG_VERSION")));
    let serve_help = run(Command::new(&staged).args(["serve", "--help"]));
    assert!(serve_help.status.success() && text(&serve_help.stdout).contains("--listen <LISTEN>"));
    for f in ["manifest.toml", "model.onnx", "MODEL_CARD.md"] {
        let original = std::fs::read(root().join("models/dr-synth").join(f)).unwrap();
        assert_eq!(std::fs::read(stage.join("models/dr-synth").join(f)).unwrap(), original, "staged {f}");
    }

    // The unversioned name the image points ORT_DYLIB_PATH at leads to the library, and
    // the staged binary loads it and the staged model (integrity checked).
    let link = stage.join("lib/libonnxruntime.so");
    let target = std::fs::read_link(&link).expect("lib/libonnxruntime.so is a link");
    assert!(stage.join("lib").join(&target).is_file(), "{target:?}");
    let inspect = run(Command::new(&staged).args(["model", "inspect"]).arg(stage.join("models/dr-synth")).env("ORT_DYLIB_PATH", &link));
    let report = text(&inspect.stdout);
    assert!(inspect.status.success(), "{report}{}", text(&inspect.stderr));
    assert!(report.contains("integrity OK") && report.contains("provider:    CPUExecutionProvider"), "{report}");
    let from = format!(" from {}", link.display());
    let runtime_line = report.lines().find(|l| l.starts_with("runtime:")).unwrap();
    assert!(runtime_line.ends_with(&from), "{runtime_line}");
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        let version = runtime_line.split_whitespace().nth(3).unwrap();
        assert_eq!(target, Path::new(&format!("libonnxruntime.so.{version}")), "the pinned library is staged");
    }

    // The Dockerfile's paths under /opt/drscreen (where it copies the staged folder) exist.
    let env = dockerfile_env(&dockerfile());
    let bin_dir = env["PATH"].split(':').next().unwrap();
    for path in [format!("{bin_dir}/drscreen"), env["ORT_DYLIB_PATH"].clone(), format!("{}/manifest.toml", env["DRSCREEN_MODEL"])] {
        let inside = path.strip_prefix("/opt/drscreen/").unwrap_or_else(|| panic!("{path} is outside /opt/drscreen"));
        assert!(stage.join(inside).exists(), "{path} is not in the staged folder");
    }
}
