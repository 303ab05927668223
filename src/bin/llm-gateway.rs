//! `llm-gateway`: offline companion of the filter.
//!
//! ```text
//! llm-gateway check  CONFIG            validate a gateway config (YAML or JSON)
//! llm-gateway render CONFIG [options]  print a complete Envoy bootstrap (YAML)
//!   --listen ADDR:PORT   listener (default 127.0.0.1:4000)
//!   --admin-port PORT    admin interface on 127.0.0.1 (default 9901)
//!   --wasm PATH          llm_gateway.wasm as Envoy sees it
//!   --access-log PATH    JSON access log file (default: stdout)
//!   --spend-log PATH     spend records, one JSON line per LLM request (`-`: stdout; default: none)
//! ```
//!
//! Both use the filter's own parser, so an error here is the error the
//! filter would log, with the field and the reason.

use std::process::ExitCode;

use llm_gateway::render::{inline_blocked_words_files, render, resolve_endpoints, RenderOptions};

fn usage() -> ExitCode {
    eprintln!(
        "usage: llm-gateway check CONFIG\n       llm-gateway render CONFIG [--listen ADDR:PORT] [--admin-port PORT] [--wasm PATH] [--access-log PATH] [--spend-log PATH]"
    );
    ExitCode::from(2)
}

fn load(path: &str) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    llm_gateway::yaml::from_str(&text).map_err(|e| format!("{path}: not valid YAML/JSON: {e}"))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cmd), Some(path)) = (args.first(), args.get(1)) else {
        return usage();
    };
    let mut cfg = match load(path) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Files a content filter names (LiteLLM reads them at start; the filter
    // cannot): their words go into the config. Paths as LiteLLM takes them,
    // from the working directory, else beside the config.
    let beside = std::path::Path::new(path)
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let read = |file: &str| {
        load(file).or_else(|first| load(&beside.join(file).to_string_lossy()).map_err(|_| first))
    };
    if let Err(e) = resolve_endpoints(&mut cfg, &|k| std::env::var(k).ok()) {
        eprintln!("error: {path}: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = inline_blocked_words_files(&mut cfg, &read) {
        eprintln!("error: {path}: {e}");
        return ExitCode::FAILURE;
    }
    let mut opts = RenderOptions::default();
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        let Some(value) = rest.next() else {
            return usage();
        };
        match flag.as_str() {
            "--listen" => match value
                .rsplit_once(':')
                .and_then(|(a, p)| Some((a, p.parse().ok()?)))
            {
                Some((a, p)) => {
                    opts.listen_address = a.to_string();
                    opts.listen_port = p;
                }
                None => return usage(),
            },
            "--admin-port" => match value.parse() {
                Ok(p) => opts.admin_port = p,
                Err(_) => return usage(),
            },
            "--wasm" => opts.wasm_path = value.clone(),
            "--access-log" => opts.access_log_path = Some(value.clone()),
            "--spend-log" => opts.spend_log_path = Some(value.clone()),
            _ => return usage(),
        }
    }
    match cmd.as_str() {
        "check" => match llm_gateway::render::prepare(&cfg) {
            Ok(p) => {
                for w in &p.parsed.warnings {
                    eprintln!("warning: {w}");
                }
                eprintln!(
                    "{path}: OK ({} deployment(s), {} alias(es))",
                    p.parsed.deployments.len(),
                    p.parsed.aliases().len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {path}: {e}");
                ExitCode::FAILURE
            }
        },
        "render" => match render(&cfg, &opts) {
            Ok(bootstrap) => match serde_yaml_ng::to_string(&bootstrap) {
                Ok(y) => {
                    print!("# Rendered by `llm-gateway render {path}`; edit the source config, not this file.\n{y}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("error: {path}: {e}");
                ExitCode::FAILURE
            }
        },
        _ => usage(),
    }
}
