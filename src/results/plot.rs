//! `race-eval plot`: accuracy by level and by article length for one or more runs, as bars
//! with 95% Wilson intervals, in SVG or PNG (rendered from the SVG with resvg and a built-in font).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Run, Score};

/// One panel: a title and, per category, each run's score.
struct Panel {
    title: String,
    categories: Vec<String>,
    /// scores[run][category]
    scores: Vec<Vec<Score>>,
}

fn panels(runs: &[Run]) -> Vec<Panel> {
    let levels = ["overall", "middle", "high"];
    let by_level = Panel {
        title: "accuracy by level".into(),
        categories: levels.iter().map(|s| s.to_string()).collect(),
        scores: runs
            .iter()
            .map(|r| {
                let a = &r.summary.accuracy;
                vec![a.overall, a.middle, a.high]
            })
            .collect(),
    };
    // Length buckets in the first run's order, plus any the others add.
    let mut names: Vec<String> = Vec::new();
    for r in runs {
        for b in &r.summary.breakdowns.article_words {
            if !names.contains(&b.name) {
                names.push(b.name.clone());
            }
        }
    }
    let by_length = Panel {
        title: "accuracy by article length (words)".into(),
        scores: runs
            .iter()
            .map(|r| {
                names
                    .iter()
                    .map(|n| {
                        r.summary
                            .breakdowns
                            .article_words
                            .iter()
                            .find(|b| &b.name == n)
                            .map(|b| b.score)
                            .unwrap_or(Score::new(&Default::default()))
                    })
                    .collect()
            })
            .collect(),
        categories: names,
    };
    vec![by_level, by_length]
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    runs: &[Run],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("cannot draw the plot: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            "race-eval: accuracy with 95% Wilson intervals",
            ("sans-serif", 22),
        )
        .map_err(err)?;
    let legend_h = 12 + 22 * runs.len() as u32;
    let h = root.dim_in_pixel().1;
    let (charts, legend) = root.split_vertically(h.saturating_sub(legend_h));
    let areas = charts.split_evenly((1, 2));
    let n_runs = runs.len();
    for (panel, area) in panels(runs).iter().zip(&areas) {
        let k = panel.categories.len();
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(12)
            .margin_bottom(40)
            .x_label_area_size(10)
            .y_label_area_size(45)
            .build_cartesian_2d(-0.5f64..(k as f64 - 0.5), 0f64..100f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("accuracy (%)")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(err)?;
        // chance level for four options
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(-0.5, 25.0), (k as f64 - 0.5, 25.0)],
                ShapeStyle::from(&RGBColor(190, 70, 70)).stroke_width(1),
            )))
            .map_err(err)?;
        let width = 0.8 / n_runs as f64;
        for ri in 0..n_runs {
            let color = COLORS[ri % COLORS.len()];
            let bars: Vec<(f64, Score)> = panel.scores[ri]
                .iter()
                .enumerate()
                .filter(|(_, s)| s.total > 0)
                .map(|(ci, s)| (ci as f64 - 0.4 + width * (ri as f64 + 0.5), *s))
                .collect();
            chart
                .draw_series(bars.iter().map(|&(x, s)| {
                    let acc = 100.0 * s.accuracy.unwrap_or(0.0);
                    Rectangle::new(
                        [(x - 0.42 * width, 0.0), (x + 0.42 * width, acc)],
                        color.mix(0.75).filled(),
                    )
                }))
                .map_err(err)?;
            chart
                .draw_series(bars.iter().filter_map(|&(x, s)| {
                    let ci = s.ci95?;
                    let acc = 100.0 * s.accuracy?;
                    Some(ErrorBar::new_vertical(
                        x,
                        100.0 * ci.lo,
                        acc,
                        100.0 * ci.hi,
                        BLACK.stroke_width(1),
                        8,
                    ))
                }))
                .map_err(err)?;
        }
        // category names under the axis, centred on each group
        let style =
            TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (ci, cat) in panel.categories.iter().enumerate() {
            // with the number of questions (the largest over runs: they usually share data)
            let n = panel.scores.iter().map(|r| r[ci].total).max().unwrap_or(0);
            let name = format!("{cat} (n={n})");
            // backend_coord is absolute; `root` (below the title) is offset from the canvas
            let (px, py) = chart.backend_coord(&(ci as f64, 0.0));
            let (bx, by) = root.get_base_pixel();
            root.draw(&Text::new(
                name.clone(),
                (px - bx, py - by + 8),
                style.clone(),
            ))
            .map_err(err)?;
        }
    }
    // legend under both panels: colour, run id, overall accuracy and question count
    let text = TextStyle::from(("sans-serif", 14).into_font());
    for (ri, run) in runs.iter().enumerate() {
        let color = COLORS[ri % COLORS.len()];
        let y = 6 + 22 * ri as i32;
        legend
            .draw(&Rectangle::new(
                [(60, y + 2), (76, y + 16)],
                color.mix(0.75).filled(),
            ))
            .map_err(err)?;
        let label = format!(
            "{}: {:.1}% of {} questions ({}, {})",
            run.id(),
            run_acc(run),
            run.summary.counts.questions,
            run.summary.model.name,
            run.summary.data.path
        );
        legend
            .draw(&Text::new(label, (84, y + 2), text.clone()))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn run_acc(run: &Run) -> f64 {
    100.0 * run.summary.accuracy.overall.accuracy.unwrap_or(0.0)
}

/// DejaVu Sans (Bitstream Vera licence, `assets/fonts/DejaVuSans-LICENSE.txt`), built in so PNG
/// text renders the same on every machine, with or without system fonts.
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The plot of `runs` as SVG text.
pub fn svg(runs: &[Run]) -> Result<String> {
    if runs.is_empty() {
        bail!("nothing to plot: name one or more runs");
    }
    let height = 500 + 22 * runs.len() as u32;
    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, (1100, height)).into_drawing_area(),
        runs,
    )?;
    Ok(svg)
}

/// Rasterises SVG text to PNG bytes with the built-in font.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options {
        font_family: "DejaVu Sans".into(),
        ..Default::default()
    };
    let db = opt.fontdb_mut();
    db.load_font_data(FONT.to_vec());
    db.set_sans_serif_family("DejaVu Sans");
    let tree = usvg::Tree::from_str(svg, &opt).context("cannot read the plot's SVG back")?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow!("cannot make a {}x{} picture", size.width(), size.height()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("cannot encode the PNG")
}

/// Draws `runs` into `output`: SVG for `.svg`, PNG for `.png`.
pub fn plot(runs: &[Run], output: &Path) -> Result<()> {
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let png = match ext.as_deref() {
        Some("svg") => false,
        Some("png") => true,
        _ => bail!(
            "--output {}: give a file ending in .svg or .png",
            output.display()
        ),
    };
    let svg = svg(runs)?;
    let bytes = if png {
        svg_to_png(&svg)?
    } else {
        svg.into_bytes()
    };
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(output, bytes).with_context(|| format!("cannot write {}", output.display()))
}
/// A small SVG of a training run's loss per step `(step, loss)` and dev accuracy points
/// `(step, accuracy in 0..1)`, written beside its loss.csv.
pub fn loss_curve_svg(log: &[(usize, f64)], dev: &[(usize, f64)]) -> String {
    let (w, h, pad) = (640.0, 320.0, 40.0);
    let n = log.len().max(2) as f64;
    let max_loss = log.iter().map(|p| p.1).fold(1e-9, f64::max);
    let x = |step: usize| pad + (w - 2.0 * pad) * (step as f64 - 1.0) / (n - 1.0);
    let y = |v: f64, max: f64| h - pad - (h - 2.0 * pad) * (v / max).clamp(0.0, 1.0);
    let loss: Vec<String> = log
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1, max_loss)))
        .collect();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{pad}\" y=\"20\" font-size=\"12\">loss (blue, max {max_loss:.3}) and dev accuracy (red, 0-100%) over {} steps</text>\n\
         <polyline fill=\"none\" stroke=\"steelblue\" points=\"{}\"/>\n",
        log.len(),
        loss.join(" ")
    );
    for d in dev {
        svg += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"crimson\"/>\n",
            x(d.0),
            y(d.1, 1.0)
        );
    }
    svg + "</svg>\n"
}
