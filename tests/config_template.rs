//! `etc/config-template.toml` documents every option with its default value.
//!
//! Convention in the template: a line `# key = value` states the default of `key` in the section
//! above it; prose comments never have that shape. Uncommenting every such line must give a
//! file that parses (unknown keys are rejected) to exactly `Config::default()`, and every option
//! of the default config must appear, so neither can drift from the other.

use std::collections::BTreeSet;

use regionstore::config::Config;

const TEMPLATE: &str = include_str!("../etc/config-template.toml");

/// The template with every `# key = value` line uncommented.
fn uncommented_template() -> String {
    TEMPLATE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_assignment(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_assignment(text: &str) -> bool {
    let Some((key, _)) = text.split_once(" = ") else { return false };
    !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Dotted paths of every leaf value (arrays count as leaves).
fn leaf_keys(prefix: &str, value: &toml::Value, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaf_keys(&path, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn template_defaults_equal_code_defaults() {
    let text = uncommented_template();
    let parsed: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("template: {e}"));
    assert_eq!(
        parsed,
        Config::default(),
        "a `# key = value` line in the template is not the default"
    );
}

#[test]
fn template_documents_every_option() {
    let mut documented = BTreeSet::new();
    leaf_keys("", &toml::from_str(&uncommented_template()).unwrap(), &mut documented);
    let mut defaults = BTreeSet::new();
    leaf_keys("", &toml::Value::try_from(Config::default()).unwrap(), &mut defaults);
    let missing: Vec<_> = defaults.difference(&documented).collect();
    assert!(missing.is_empty(), "options missing from etc/config-template.toml: {missing:?}");
}

#[test]
fn template_as_shipped_is_valid() {
    let cfg: Config = toml::from_str(TEMPLATE).unwrap();
    cfg.validate().unwrap();
}
