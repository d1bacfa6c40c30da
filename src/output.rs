//! Output for people (aligned tables) and for scripts (JSON).

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Prints rows under headers, columns padded to their widest cell, like `docker network ls`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(headers, rows));
}

pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("   ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

pub fn json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A string field, or "" when absent or null.
pub fn s(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Where an object came from: the `wasmnet.origin` label a runtime plugin set (`docker`,
/// `cni`), or `-` for the API's own.
pub fn origin(value: &Value) -> String {
    match s(&value["labels"], "wasmnet.origin") {
        o if o.is_empty() => "-".into(),
        o => o,
    }
}

/// The short form of an id, as Docker shows it.
pub fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_to_the_widest_cell() {
        let out = render_table(
            &["ID", "NAME"],
            &[
                vec!["abc".into(), "web".into()],
                vec!["a".into(), "database".into()],
            ],
        );
        assert_eq!(out, "ID    NAME\nabc   web\na     database\n");
    }
}
