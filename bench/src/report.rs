//! What a benchmark run leaves behind: the environment it ran in, the raw
//! groups and derived rows as JSON, an aligned terminal table, and a
//! Markdown report that can be read without the code.

use std::fmt::Write as _;
use std::io::BufWriter;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::figures::{Group, Row};

/// Shown for a figure that could not be computed (no baseline, no samples).
pub const MISSING: &str = "–";

/// A model file, identified by content so a result can be tied to weights.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelRef {
    pub name: String,
    pub path: String,
    pub sha256: String,
}

/// Everything needed to reproduce or judge a run besides its numbers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Environment {
    /// Model name from /proc/cpuinfo.
    pub cpu: String,
    pub cores: usize,
    pub edge_cores: Vec<usize>,
    pub cloud_cores: Vec<usize>,
    pub edge_threads: usize,
    pub cloud_threads: usize,
    pub drafter: ModelRef,
    pub target: ModelRef,
    /// The emulated link's profile description.
    pub link: String,
    pub transport_note: String,
    pub git_revision: String,
    pub command: String,
    pub started_unix: u64,
    pub max_tokens: usize,
    pub sampling: String,
}

/// The CPU model name, or "unknown" where /proc/cpuinfo is unavailable.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| parse_cpu_model(&text))
        .unwrap_or_else(|| "unknown".into())
}

fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// The checked-out commit, suffixed "-dirty" when the tree has changes the
/// commit does not describe; "unknown" outside a git checkout.
pub fn git_revision() -> String {
    let Some(rev) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let rev = rev.trim();
    match git(&["status", "--porcelain"]) {
        Some(status) if !status.trim().is_empty() => format!("{rev}-dirty"),
        _ => rev.to_string(),
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub use ouro_config::models::sha256_file;

/// A whole run: raw groups (so figures can be recomputed later) and the rows
/// derived from them against `baseline`.
#[derive(Serialize, Clone, Debug)]
pub struct Results {
    pub environment: Environment,
    pub baseline: String,
    pub groups: Vec<Group>,
    pub rows: Vec<Row>,
}

impl Results {
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(path)?);
        serde_json::to_writer_pretty(&mut w, self)?;
        std::io::Write::write_all(&mut w, b"\n")?;
        std::io::Write::flush(&mut w)
    }
}

/// A figure with `decimals` places, or [`MISSING`] when absent or not finite.
fn num(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        _ => MISSING.into(),
    }
}

/// Seconds shown as milliseconds.
fn ms(x: Option<f64>) -> String {
    num(x.map(|s| s * 1e3), 1)
}

/// One column of a table, shared by the terminal and Markdown renderings so
/// the two cannot drift apart.
struct Column {
    header: &'static str,
    /// Left-aligned text rather than a right-aligned number.
    text: bool,
    cell: fn(&Row) -> String,
}

const MODE: Column = Column { header: "mode", text: true, cell: |r| r.mode.clone() };
// `{}` keeps a whole RTT free of decimals and a fractional one exact.
const RTT: Column = Column { header: "RTT ms", text: false, cell: |r| format!("{}", r.rtt_ms) };
const CLIENTS: Column = Column { header: "clients", text: false, cell: |r| r.concurrency.to_string() };
const TOK_S: Column = Column { header: "tok/s", text: false, cell: |r| num(Some(r.figures.tokens_per_s), 2) };
const TOK_S_RATIO: Column =
    Column { header: "×base tok/s", text: false, cell: |r| num(r.vs_baseline.tokens_per_s, 2) };
// Zero means the mode had no verify rounds (or no tokens): nothing to show.
const ACCEPTED: Column = Column {
    header: "accepted/round",
    text: false,
    cell: |r| num(Some(r.figures.mean_accepted_per_round).filter(|&x| x > 0.0), 2),
};
const MISMATCHES: Column = Column { header: "mismatches", text: false, cell: |r| r.figures.mismatches.to_string() };

const OVERALL: &[Column] = &[
    MODE,
    RTT,
    CLIENTS,
    TOK_S,
    TOK_S_RATIO,
    Column { header: "TTFT p50 ms", text: false, cell: |r| ms(Some(r.figures.ttft_p50_s)) },
    Column { header: "ITL p50 ms", text: false, cell: |r| ms(Some(r.figures.itl_p50_s)) },
    Column { header: "ITL p95 ms", text: false, cell: |r| ms(Some(r.figures.itl_p95_s)) },
    ACCEPTED,
    Column { header: "passes/token", text: false, cell: |r| num(Some(r.figures.target_passes_per_token), 3) },
    Column { header: "cloud CPU ms/token", text: false, cell: |r| ms(r.figures.cloud_cpu_s_per_token) },
    Column { header: "×base cloud CPU", text: false, cell: |r| num(r.vs_baseline.cloud_cpu_per_token, 2) },
    Column { header: "bytes/token", text: false, cell: |r| num(r.figures.wire_bytes_per_token, 0) },
    // The controller's cost model against what its rounds did.
    Column {
        header: "predicted/actual accepted",
        text: false,
        cell: |r| {
            r.figures
                .prediction
                .map_or("–".into(), |e| format!("{:.2}/{:.2}", e.accepted_predicted, e.accepted_actual))
        },
    },
    Column {
        header: "predicted/actual ms/round",
        text: false,
        cell: |r| {
            r.figures
                .prediction
                .map_or("–".into(), |e| format!("{:.0}/{:.0}", e.round_ms_predicted, e.round_ms_actual))
        },
    },
    MISMATCHES,
];

const PER_CATEGORY: &[Column] = &[
    MODE,
    RTT,
    CLIENTS,
    Column { header: "category", text: true, cell: |r| r.category.clone() },
    TOK_S,
    TOK_S_RATIO,
    ACCEPTED,
    MISMATCHES,
];

/// Rows over all prompts, grouped by link setting then load; modes keep the
/// order they were run in.
fn overall_rows(rows: &[Row]) -> Vec<&Row> {
    let mut out: Vec<&Row> = rows.iter().filter(|r| r.category == "all").collect();
    out.sort_by(|a, b| a.rtt_ms.total_cmp(&b.rtt_ms).then(a.concurrency.cmp(&b.concurrency)));
    out
}

/// Per-category rows, with each category's modes next to each other.
fn category_rows(rows: &[Row]) -> Vec<&Row> {
    let mut out: Vec<&Row> = rows.iter().filter(|r| r.category != "all").collect();
    out.sort_by(|a, b| {
        a.rtt_ms.total_cmp(&b.rtt_ms).then(a.concurrency.cmp(&b.concurrency)).then(a.category.cmp(&b.category))
    });
    out
}

/// The overall rows as aligned plain text: a header line, then one line per
/// (RTT, concurrency, mode).
pub fn terminal_table(rows: &[Row]) -> String {
    let rows = overall_rows(rows);
    let cells: Vec<Vec<String>> = rows.iter().map(|r| OVERALL.iter().map(|c| (c.cell)(r)).collect()).collect();
    let widths: Vec<usize> = OVERALL
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells.iter().map(|row| row[i].chars().count()).chain([c.header.chars().count()]).max().unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let padded: Vec<String> = values
            .iter()
            .zip(OVERALL.iter().zip(&widths))
            .map(|(v, (c, &w))| if c.text { format!("{v:<w$}") } else { format!("{v:>w$}") })
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = line(OVERALL.iter().map(|c| c.header).collect());
    out.push('\n');
    for row in &cells {
        out += &line(row.iter().map(String::as_str).collect());
        out.push('\n');
    }
    out
}

/// A Markdown table; `|` in a cell would end it early.
fn markdown_table(columns: &[Column], rows: &[&Row]) -> String {
    let escape = |s: String| s.replace('|', "\\|");
    let mut out = format!("| {} |\n|", columns.iter().map(|c| c.header).collect::<Vec<_>>().join(" | "));
    for c in columns {
        out += if c.text { ":---|" } else { "---:|" };
    }
    out.push('\n');
    for r in rows {
        let cells: Vec<String> = columns.iter().map(|c| escape((c.cell)(r))).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// A Unix time as a UTC date, without pulling in a date crate for one line
/// (days to civil date after Howard Hinnant's `civil_from_days`).
fn utc(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

fn cores(list: &[usize]) -> String {
    if list.is_empty() {
        return "not pinned".into();
    }
    list.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

fn model_line(role: &str, m: &ModelRef) -> String {
    let sha = m.sha256.get(..12).unwrap_or(&m.sha256);
    format!("- {role}: {} (`{}`, sha256 `{sha}`)\n", m.name, m.path)
}

fn environment_section(env: &Environment) -> String {
    let mut out = String::from("## Environment\n\n");
    let _ = writeln!(out, "- CPU: {} ({} cores)", env.cpu, env.cores);
    let _ = writeln!(
        out,
        "- Pinning: edge on cores {}, cloud on cores {}",
        cores(&env.edge_cores),
        cores(&env.cloud_cores)
    );
    let _ = writeln!(out, "- Threads: edge {}, cloud {}", env.edge_threads, env.cloud_threads);
    out += &model_line("Drafter", &env.drafter);
    out += &model_line("Target", &env.target);
    let _ = writeln!(out, "- Link: {}", env.link);
    let _ = writeln!(out, "- Transport: {}", env.transport_note);
    let _ = writeln!(out, "- Generation: up to {} new tokens, {}", env.max_tokens, env.sampling);
    let _ = writeln!(out, "- Started: {}", utc(env.started_unix));
    let _ = writeln!(out, "- Git revision: `{}`", env.git_revision);
    let _ = writeln!(out, "\nCommand:\n\n```sh\n{}\n```\n", env.command);
    out
}

fn mismatches_section(groups: &[Group], baseline: &str) -> String {
    let mut out = String::from("## Mismatches\n\n");
    let compared = groups.iter().flat_map(|g| &g.samples).filter(|s| s.matches_baseline.is_some()).count();
    let mut lines = String::new();
    for g in groups {
        for s in g.samples.iter().filter(|s| s.matches_baseline == Some(false)) {
            let _ = writeln!(
                lines,
                "| {} | {} | {} | {} | {} |",
                s.mode.replace('|', "\\|"),
                g.rtt_ms,
                g.concurrency,
                s.category.replace('|', "\\|"),
                s.prompt
            );
        }
    }
    if compared == 0 {
        let _ = writeln!(out, "No sample was compared with the {baseline} text.\n");
    } else if lines.is_empty() {
        let _ = writeln!(out, "None: all {compared} compared samples produced the {baseline} text.\n");
    } else {
        out += "Samples whose text differs from the baseline's:\n\n";
        out += "| mode | RTT ms | clients | category | prompt |\n|:---|---:|---:|:---|---:|\n";
        out += &lines;
        out.push('\n');
    }
    out
}

fn plots_section(plots: &[(String, String)]) -> String {
    if plots.is_empty() {
        return String::new();
    }
    let mut out = String::from("## Plots\n\n");
    for (title, file) in plots {
        let _ = writeln!(out, "### {title}\n\n![{title}]({file})\n");
    }
    out
}

fn how_to_read(baseline: &str) -> String {
    format!(
        "## How to read this\n\n\
         Every ratio (×base) is against {baseline} at the same RTT and number of clients in this same run, \
         on the same machine and link. Cloud CPU per token is the cloud process's CPU time (all threads, \
         as accounted by the kernel) divided by the tokens generated, so it includes networking, batching and the \
         model. Inter-token latency (ITL) spreads a delivery of several tokens evenly over them: a round that \
         commits k tokens after g ms counts as k latencies of g/k ms. Edge-only runs the drafter alone and is \
         lossy: its text is the drafter's, not the target model's, so its mismatches are expected and its speed \
         is not a like-for-like comparison. A dash marks a figure that does not apply or could not be computed \
         (no baseline, no verify rounds, no cloud measurement).\n"
    )
}

/// The full report; `plots` are (title, SVG file name relative to the report).
pub fn markdown(results: &Results, plots: &[(String, String)]) -> String {
    let mut out = String::from("# ouro: speculative decoding between edge and cloud\n\n");
    out += &environment_section(&results.environment);
    let _ = writeln!(out, "## Results\n\nBaseline: {}. All prompts:\n", results.baseline);
    out += &markdown_table(OVERALL, &overall_rows(&results.rows));
    out += "\n## Per category\n\n";
    out += &markdown_table(PER_CATEGORY, &category_rows(&results.rows));
    out.push('\n');
    out += &mismatches_section(&results.groups, &results.baseline);
    out += &plots_section(plots);
    out += &how_to_read(&results.baseline);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::figures::{rows, Sample};

    pub(crate) const MODES: [&str; 4] = ["cloud-only", "edge-only", "chain4", "ouroboros"];

    fn sample(mode: &str, category: &str, prompt: usize, chunks: &[u32], step_s: f64) -> Sample {
        let mut arrivals = Vec::new();
        let mut t = 0.2;
        for &k in chunks {
            arrivals.extend(std::iter::repeat_n(t, k as usize));
            t += step_s;
        }
        Sample {
            mode: mode.into(),
            category: category.into(),
            prompt,
            tokens: vec![7; arrivals.len()],
            ttft_s: arrivals[0],
            total_s: *arrivals.last().unwrap(),
            arrivals_s: arrivals,
            rounds: chunks.len(),
            accepted_per_round: chunks.to_vec(),
            target_passes: chunks.len(),
            matches_baseline: Some(true),
            round_log: Vec::new(),
        }
    }

    fn group(mode: &str, rtt_ms: f64, concurrency: usize) -> Group {
        // Speculation commits several tokens per verify round; the other
        // modes deliver one token at a time and have no rounds.
        let chunks: &[u32] = match mode {
            "ouroboros" => &[3, 1, 5, 2, 20, 4],
            "chain4" => &[2, 1, 4, 3, 1],
            _ => &[1; 8],
        };
        let step = 0.01 + rtt_ms / 1e3;
        let mut samples = vec![sample(mode, "qa", 0, chunks, step), sample(mode, "rag", 1, chunks, step * 1.5)];
        if !matches!(mode, "ouroboros" | "chain4") {
            samples.iter_mut().for_each(|s| {
                s.accepted_per_round.clear();
                s.rounds = 0;
            });
        }
        if mode == "edge-only" {
            // The drafter alone is lossy.
            samples[1].matches_baseline = Some(false);
        }
        Group {
            mode: mode.into(),
            rtt_ms,
            concurrency,
            cloud_cpu_s: if mode == "edge-only" { 0.0 } else { 0.5 },
            wire_bytes: 1000,
            wall_s: 1.0,
            samples,
        }
    }

    pub(crate) fn synthetic_groups(rtts: &[f64], concurrencies: &[usize]) -> Vec<Group> {
        let mut out = Vec::new();
        for &rtt in rtts {
            for &c in concurrencies {
                out.extend(MODES.iter().map(|m| group(m, rtt, c)));
            }
        }
        out
    }

    fn model(name: &str) -> ModelRef {
        ModelRef { name: name.into(), path: format!("/models/{name}.gguf"), sha256: "0123456789abcdef".repeat(4) }
    }

    fn environment() -> Environment {
        Environment {
            cpu: "Test CPU".into(),
            cores: 2,
            edge_cores: vec![0],
            cloud_cores: vec![1],
            edge_threads: 1,
            cloud_threads: 1,
            drafter: model("small"),
            target: model("large"),
            link: "wifi: 20 ms RTT".into(),
            transport_note: "gRPC over TCP".into(),
            git_revision: "abc1234-dirty".into(),
            command: "ouro-bench compare --modes cloud-only,edge-only,chain4,ouroboros".into(),
            started_unix: 1_700_000_000,
            max_tokens: 64,
            sampling: "greedy".into(),
        }
    }

    pub(crate) fn synthetic_results(rtts: &[f64], concurrencies: &[usize]) -> Results {
        let groups = synthetic_groups(rtts, concurrencies);
        Results { environment: environment(), baseline: "cloud-only".into(), rows: rows(&groups, "cloud-only"), groups }
    }

    #[test]
    fn markdown_has_the_tables_every_mode_and_the_mismatch() {
        let results = synthetic_results(&[10.0, 50.0], &[1]);
        let md = markdown(&results, &[("Tokens/s".into(), "tokens_per_s_vs_rtt_c1.svg".into())]);
        assert!(md.contains("| mode | RTT ms | clients | tok/s | ×base tok/s |"), "{md}");
        assert!(md.contains("| mode | RTT ms | clients | category |"), "{md}");
        for mode in MODES {
            assert!(md.contains(&format!("| {mode} |")), "{mode} missing");
        }
        assert!(md.contains("| edge-only | 10 | 1 | rag | 1 |"), "mismatch listed: {md}");
        assert!(md.contains("![Tokens/s](tokens_per_s_vs_rtt_c1.svg)"));
        assert!(md.contains("sha256 `0123456789ab`"));
        assert!(md.contains("## How to read this"));
        assert!(md.contains("- Started: 2023-11-14 22:13:20 UTC"), "{md}");
    }

    #[test]
    fn markdown_says_when_nothing_mismatched() {
        let mut results = synthetic_results(&[10.0], &[1]);
        results.groups.iter_mut().flat_map(|g| &mut g.samples).for_each(|s| s.matches_baseline = Some(true));
        assert!(markdown(&results, &[]).contains("None: all 8 compared samples"));
    }

    #[test]
    fn terminal_table_has_a_header_and_one_line_per_overall_row() {
        let results = synthetic_results(&[10.0, 50.0], &[1, 2]);
        let table = terminal_table(&results.rows);
        let lines: Vec<&str> = table.lines().collect();
        let overall = results.rows.iter().filter(|r| r.category == "all").count();
        assert_eq!(overall, 16);
        assert_eq!(lines.len(), overall + 1, "{table}");
        assert!(lines[0].starts_with("mode"));
        // Aligned: every numeric column ends at the same place, so the
        // right-aligned last column makes all lines equally long.
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{table}");
    }

    #[test]
    fn missing_values_print_as_a_dash() {
        assert_eq!(num(None, 2), MISSING);
        assert_eq!(num(Some(f64::NAN), 2), MISSING);
        assert_eq!(num(Some(1.234), 2), "1.23");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        // Without a baseline group there is no ratio to print, and without
        // a round log no prediction.
        let groups = vec![group("ouroboros", 10.0, 1)];
        let table = terminal_table(&rows(&groups, "cloud-only"));
        let line = table.lines().nth(1).unwrap();
        assert_eq!(line.matches(MISSING).count(), 4, "{table}");
    }

    #[test]
    fn environment_round_trips_through_json() {
        let env = environment();
        let json = serde_json::to_string(&env).unwrap();
        assert_eq!(serde_json::from_str::<Environment>(&json).unwrap(), env);
    }

    #[test]
    fn results_write_as_pretty_json() {
        let results = synthetic_results(&[10.0], &[1]);
        let path = std::env::temp_dir().join(format!("ouro-report-{}.json", std::process::id()));
        results.write_json(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(value["baseline"], "cloud-only");
        assert_eq!(value["rows"].as_array().unwrap().len(), results.rows.len());
    }

    #[test]
    fn cpu_model_and_file_hash() {
        let info = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Some CPU @ 2.0GHz\n";
        assert_eq!(parse_cpu_model(info).as_deref(), Some("Some CPU @ 2.0GHz"));
        assert_eq!(parse_cpu_model("processor : 0\n"), None);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"abc").unwrap();
        let sha = sha256_file(file.path()).unwrap();
        assert_eq!(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
