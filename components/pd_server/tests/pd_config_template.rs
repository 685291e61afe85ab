//! `etc/pd-config-template.toml` documents every option with its default value.
//!
//! Convention (as for the server's template): a line `# key = value` states the default of
//! `key` in the section above it. Uncommenting every such line must give a file that parses to
//! exactly `PdConfig::default()`, and every option of the default config must appear.

use std::collections::BTreeSet;

use pd_server::PdConfig;

const TEMPLATE: &str = include_str!("../../../etc/pd-config-template.toml");

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
    let parsed: PdConfig =
        toml::from_str(&uncommented_template()).unwrap_or_else(|e| panic!("template: {e}"));
    assert_eq!(parsed, PdConfig::default(), "a `# key = value` line is not the default");
}

#[test]
fn template_documents_every_option() {
    let mut documented = BTreeSet::new();
    leaf_keys("", &toml::from_str(&uncommented_template()).unwrap(), &mut documented);
    let mut defaults = BTreeSet::new();
    leaf_keys("", &toml::Value::try_from(PdConfig::default()).unwrap(), &mut defaults);
    let missing: Vec<_> = defaults.difference(&documented).collect();
    assert!(missing.is_empty(), "options missing from etc/pd-config-template.toml: {missing:?}");
}

#[test]
fn template_as_shipped_is_valid() {
    let cfg: PdConfig = toml::from_str(TEMPLATE).unwrap();
    cfg.validate().unwrap();
}

/// The merge options (#14) are in `[schedule]` under PD's names, with the issue's defaults.
#[test]
fn template_documents_the_merge_options_with_the_issue_defaults() {
    let schedule = TEMPLATE.split("\n[schedule]\n").nth(1).expect("a [schedule] section");
    for line in [
        "# max-merge-region-size = 20",
        "# max-merge-region-keys = 200000",
        "# split-merge-interval = \"1h\"",
        "# merge-schedule-limit = 8",
        "# enable-one-way-merge = false",
    ] {
        assert!(schedule.lines().any(|l| l == line), "missing from [schedule]: {line}");
    }
    let cfg: PdConfig = toml::from_str(&uncommented_template()).unwrap();
    assert_eq!(cfg.schedule.max_merge_region_size_bytes(), 20 * 1024 * 1024);
    assert_eq!(cfg.schedule.split_merge_interval.as_millis(), 3_600_000);
}
