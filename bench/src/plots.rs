//! SVG charts of a run, for the Markdown report. Text is left to the SVG
//! viewer's fonts (plotters' crude layout estimate is enough for placing
//! it), so no font files or font features are needed.

use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::figures::{Group, Row};
use crate::report::Results;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("drawing a plot: {0}")]
    Draw(String),
    #[error("creating the plot directory: {0}")]
    Io(#[from] std::io::Error),
}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for PlotError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        PlotError::Draw(e.to_string())
    }
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

const SIZE: (u32, u32) = (900, 540);
const FONT: &str = "sans-serif";
/// The minor grid, kept faint so it guides the eye without hiding the data.
const FAINT: RGBColor = RGBColor(240, 240, 240);
/// Rounds committing this many tokens or more share the last bin.
const MAX_BIN: u32 = 16;

/// Colour-blind-friendlier than plotters' defaults, and no yellow on white.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// A mode's colour is picked by its position among all the run's modes, so
/// it is the same in every chart even when a chart leaves some modes out.
fn color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// Distinct modes in the order they were run.
fn mode_order<'a>(modes: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for m in modes {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

fn clients(n: usize) -> String {
    if n == 1 {
        "1 client".into()
    } else {
        format!("{n} clients")
    }
}

fn canvas(path: &Path) -> Result<Area<'_>, PlotError> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    Ok(root)
}

/// A chart with nothing to show still gets its file, so the report's links
/// never dangle, and says why it is empty.
fn empty(root: &Area, title: &str, note: &str) -> Result<(), PlotError> {
    let area = root.titled(title, (FONT, 22))?;
    area.draw_text(note, &TextStyle::from((FONT, 16)), (30, 30))?;
    root.present()?;
    Ok(())
}

/// The span of `xs` with a margin, so points do not sit on the frame; a
/// single value gets a window around it.
fn padded(xs: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let pad = if hi > lo { (hi - lo) * 0.05 } else { (lo.abs() * 0.1).max(5.0) };
    // A negative RTT axis would only be padding.
    let start = if lo > 0.0 && lo - pad < 0.0 { 0.0 } else { lo - pad };
    start..hi + pad
}

/// Headroom above the tallest value for the legend and value labels.
fn top(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.3
    } else {
        1.0
    }
}

/// Names the bars placed at x = 1, 2, …; other tick positions stay blank.
fn category_label(x: f64, names: &[String]) -> String {
    let k = x.round();
    if (x - k).abs() > 1e-6 || k < 1.0 {
        return String::new();
    }
    names.get(k as usize - 1).cloned().unwrap_or_default()
}

/// Tokens per second against RTT at one concurrency, a line per mode.
pub fn tokens_per_s_vs_rtt(rows: &[Row], concurrency: usize, path: &Path) -> Result<(), PlotError> {
    let modes = mode_order(rows.iter().map(|r| r.mode.as_str()));
    let series: Vec<(usize, Vec<(f64, f64)>)> = modes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.category == "all" && r.concurrency == concurrency && r.mode == *m)
                .filter(|r| r.rtt_ms.is_finite() && r.figures.tokens_per_s.is_finite())
                .map(|r| (r.rtt_ms, r.figures.tokens_per_s))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (i, pts)
        })
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    let title = format!("Tokens/s vs RTT, {}", clients(concurrency));
    let root = canvas(path)?;
    if series.is_empty() {
        return empty(&root, &title, "No results at this concurrency.");
    }
    let all = || series.iter().flat_map(|(_, pts)| pts.iter().copied());
    let y_max = top(all().map(|p| p.1).fold(0.0, f64::max));
    let mut chart = ChartBuilder::on(&root)
        .caption(&title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(padded(all().map(|p| p.0)), 0.0..y_max)?;
    chart.configure_mesh().light_line_style(FAINT).x_desc("RTT (ms)").y_desc("tokens/s (per client)").draw()?;
    for (i, pts) in &series {
        let c = color(*i);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
            .label(modes[*i])
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        // A single RTT draws no line, so the points carry the data.
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
    }
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

/// The same legend box on every chart.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

/// The (RTT, concurrency) the cost chart shows: the least loaded, shortest
/// link if a single client was measured, so the cost is the model's rather
/// than queueing's.
fn cost_setting(overall: &[&Row]) -> Option<(f64, usize)> {
    overall
        .iter()
        .filter(|r| r.concurrency == 1)
        .min_by(|a, b| a.rtt_ms.total_cmp(&b.rtt_ms))
        .or(overall.first())
        .map(|r| (r.rtt_ms, r.concurrency))
}

/// Cloud CPU milliseconds per generated token, a bar per mode.
pub fn cloud_cpu_per_token(rows: &[Row], path: &Path) -> Result<(), PlotError> {
    let modes = mode_order(rows.iter().map(|r| r.mode.as_str()));
    let overall: Vec<&Row> = rows.iter().filter(|r| r.category == "all").collect();
    let root = canvas(path)?;
    let Some((rtt, concurrency)) = cost_setting(&overall) else {
        return empty(&root, "Cloud CPU per token", "No results.");
    };
    let bars: Vec<(usize, String, f64)> = modes
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let r = overall.iter().find(|r| r.mode == *m && r.rtt_ms == rtt && r.concurrency == concurrency)?;
            let ms = r.figures.cloud_cpu_s_per_token? * 1e3;
            ms.is_finite().then(|| (i, m.to_string(), ms))
        })
        .collect();
    let title = format!("Cloud CPU per token, RTT {rtt} ms, {}", clients(concurrency));
    if bars.is_empty() {
        return empty(&root, &title, "No mode has a cloud CPU figure.");
    }
    let names: Vec<String> = bars.iter().map(|b| b.1.clone()).collect();
    let y_max = top(bars.iter().map(|b| b.2).fold(0.0, f64::max));
    let mut chart = ChartBuilder::on(&root)
        .caption(&title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5..bars.len() as f64 + 0.5, 0.0..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(FAINT)
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&|x| category_label(*x, &names))
        .y_desc("cloud CPU ms / token")
        .draw()?;
    let value_style = TextStyle::from((FONT, 14)).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (k, (i, _, v)) in bars.iter().enumerate() {
        let x = k as f64 + 1.0;
        chart.draw_series([Rectangle::new([(x - 0.35, 0.0), (x + 0.35, *v)], color(*i).filled())])?;
        chart.draw_series([Text::new(format!("{v:.2}"), (x, *v), value_style.clone())])?;
    }
    root.present()?;
    Ok(())
}

/// One mode's rounds, as the fraction that committed 1, 2, … tokens.
struct Distribution<'a> {
    /// The mode's position among all modes, for its colour.
    index: usize,
    mode: &'a str,
    fractions: Vec<f64>,
}

/// Verify-round sizes of each mode that has rounds, over all its groups.
fn rounds_by_mode(groups: &[Group]) -> Vec<(usize, &str, Vec<u32>)> {
    mode_order(groups.iter().map(|g| g.mode.as_str()))
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let counts: Vec<u32> = groups
                .iter()
                .filter(|g| g.mode == m)
                .flat_map(|g| &g.samples)
                .flat_map(|s| s.accepted_per_round.iter().copied())
                .collect();
            (i, m, counts)
        })
        .filter(|(_, _, counts)| !counts.is_empty())
        .collect()
}

/// Per speculative mode (one with verify rounds), the share of rounds that
/// committed 1, 2, …, `cap` tokens. `cap` is the largest count seen, at
/// most [`MAX_BIN`], and its bin takes everything above.
fn accepted_fractions(groups: &[Group]) -> (u32, Vec<Distribution<'_>>) {
    let per_mode = rounds_by_mode(groups);
    let cap = per_mode.iter().flat_map(|(_, _, c)| c.iter().copied()).max().unwrap_or(1).clamp(1, MAX_BIN);
    let distributions = per_mode
        .into_iter()
        .map(|(index, mode, counts)| {
            let mut fractions = vec![0.0; cap as usize];
            // A round always commits at least the target's own token, so a
            // zero would be a recording slip; it is kept in the first bin
            // rather than dropped so the fractions still sum to one.
            for c in &counts {
                fractions[(c.clamp(&1, &cap) - 1) as usize] += 1.0;
            }
            fractions.iter_mut().for_each(|f| *f /= counts.len() as f64);
            Distribution { index, mode, fractions }
        })
        .collect();
    (cap, distributions)
}

/// How many tokens each verify round committed, side-by-side bars per mode.
pub fn accepted_per_round(groups: &[Group], path: &Path) -> Result<(), PlotError> {
    let title = "Tokens committed per verify round";
    let (cap, series) = accepted_fractions(groups);
    let root = canvas(path)?;
    if series.is_empty() {
        return empty(&root, title, "No speculative mode in this run.");
    }
    let names: Vec<String> =
        (1..=cap).map(|b| if b == MAX_BIN { format!("{MAX_BIN}+") } else { b.to_string() }).collect();
    let y_max = top(series.iter().flat_map(|d| d.fractions.iter().copied()).fold(0.0, f64::max)).min(1.05);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5..cap as f64 + 0.5, 0.0..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(FAINT)
        .disable_x_mesh()
        .x_labels(cap as usize)
        .x_label_formatter(&|x| category_label(*x, &names))
        .x_desc("tokens committed in the round")
        .y_desc("fraction of rounds")
        .draw()?;
    let width = 0.8 / series.len() as f64;
    for (k, d) in series.iter().enumerate() {
        let c = color(d.index);
        let bars = d.fractions.iter().enumerate().map(|(b, &f)| {
            let left = b as f64 + 1.0 - 0.4 + k as f64 * width;
            Rectangle::new([(left, 0.0), (left + width, f)], c.filled())
        });
        chart
            .draw_series(bars)?
            .label(d.mode)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

/// Writes every chart of `results` into `dir` and returns (title, file name)
/// pairs for [`crate::report::markdown`]: one throughput chart per
/// concurrency (`tokens_per_s_vs_rtt_c{N}.svg`; `tokens_per_s_vs_rtt.svg`
/// when there are no rows), then `cloud_cpu_per_token.svg` and
/// `accepted_per_round.svg`.
pub fn write_all(results: &Results, dir: &Path) -> Result<Vec<(String, String)>, PlotError> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    let mut levels: Vec<usize> = results.rows.iter().map(|r| r.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    if levels.is_empty() {
        let file = "tokens_per_s_vs_rtt.svg".to_string();
        tokens_per_s_vs_rtt(&results.rows, 1, &dir.join(&file))?;
        out.push(("Tokens/s vs RTT".to_string(), file));
    }
    for c in levels {
        let file = format!("tokens_per_s_vs_rtt_c{c}.svg");
        tokens_per_s_vs_rtt(&results.rows, c, &dir.join(&file))?;
        out.push((format!("Tokens/s vs RTT, {}", clients(c)), file));
    }
    cloud_cpu_per_token(&results.rows, &dir.join("cloud_cpu_per_token.svg"))?;
    out.push(("Cloud CPU per token".into(), "cloud_cpu_per_token.svg".into()));
    accepted_per_round(&results.groups, &dir.join("accepted_per_round.svg"))?;
    out.push(("Tokens committed per verify round".into(), "accepted_per_round.svg".into()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::rows;
    use crate::report::tests::{synthetic_groups, synthetic_results, MODES};

    /// A fresh directory per test, removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("ouro-plots-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn svg(path: &Path) -> String {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(text.starts_with("<svg"), "{}: {}", path.display(), &text[..text.len().min(80)]);
        text
    }

    fn has_text(svg: &str, s: &str) -> bool {
        svg.contains(&format!(">{s}<")) || svg.contains(&format!(">\n{s}\n<"))
    }

    #[test]
    fn write_all_draws_every_chart_with_every_mode() {
        let dir = TempDir::new("all");
        let results = synthetic_results(&[10.0, 50.0, 100.0], &[1, 4]);
        let plots = write_all(&results, &dir.0).unwrap();
        let files: Vec<&str> = plots.iter().map(|p| p.1.as_str()).collect();
        assert_eq!(
            files,
            [
                "tokens_per_s_vs_rtt_c1.svg",
                "tokens_per_s_vs_rtt_c4.svg",
                "cloud_cpu_per_token.svg",
                "accepted_per_round.svg"
            ]
        );
        for file in &files[..3] {
            let text = svg(&dir.0.join(file));
            for mode in MODES {
                assert!(has_text(&text, mode), "{mode} not in {file}");
            }
        }
        let text = svg(&dir.0.join("accepted_per_round.svg"));
        for mode in ["chain4", "ouroboros"] {
            assert!(has_text(&text, mode), "{mode} not in accepted_per_round.svg");
        }
        assert!(!has_text(&text, "cloud-only"), "only modes with verify rounds");
        assert!(has_text(&text, "16+"), "rounds above the cap share the last bin");
    }

    #[test]
    fn a_single_rtt_still_plots_its_points() {
        let dir = TempDir::new("single");
        let groups = synthetic_groups(&[20.0], &[1]);
        let path = dir.0.join("t.svg");
        tokens_per_s_vs_rtt(&rows(&groups, "cloud-only"), 1, &path).unwrap();
        let text = svg(&path);
        assert!(text.contains("<circle"), "points drawn");
        for mode in MODES {
            assert!(has_text(&text, mode));
        }
    }

    #[test]
    fn empty_input_gives_a_valid_svg_with_a_note() {
        let dir = TempDir::new("empty");
        tokens_per_s_vs_rtt(&[], 1, &dir.0.join("a.svg")).unwrap();
        cloud_cpu_per_token(&[], &dir.0.join("b.svg")).unwrap();
        accepted_per_round(&[], &dir.0.join("c.svg")).unwrap();
        assert!(has_text(&svg(&dir.0.join("a.svg")), "No results at this concurrency."));
        assert!(has_text(&svg(&dir.0.join("b.svg")), "No results."));
        assert!(has_text(&svg(&dir.0.join("c.svg")), "No speculative mode in this run."));
        // No rows at the asked concurrency is the same as no rows.
        let groups = synthetic_groups(&[20.0], &[1]);
        tokens_per_s_vs_rtt(&rows(&groups, "cloud-only"), 8, &dir.0.join("d.svg")).unwrap();
        assert!(svg(&dir.0.join("d.svg")).contains("No results at this concurrency."));
    }

    #[test]
    fn accepted_fractions_sum_to_one_and_cap_the_last_bin() {
        let groups = synthetic_groups(&[10.0], &[1]);
        let (cap, series) = accepted_fractions(&groups);
        assert_eq!(cap, MAX_BIN);
        assert_eq!(series.iter().map(|d| d.mode).collect::<Vec<_>>(), ["chain4", "ouroboros"]);
        for d in &series {
            assert!((d.fractions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        // ouroboros' 20-token round lands in "16+": one round in six.
        assert!((series[1].fractions[15] - 1.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn padding_keeps_points_off_the_frame() {
        assert_eq!(padded([20.0].into_iter()), 15.0..25.0);
        let r = padded([1.0, 201.0].into_iter());
        assert_eq!(r.start, 0.0, "no negative RTTs for padding's sake");
        assert!(r.end > 201.0);
    }
}
