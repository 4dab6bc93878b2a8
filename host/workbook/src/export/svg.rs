//! Line plots as static SVG: frame, grid, ticks with "nice" values, axis labels, a legend. No
//! scripts and no external fonts, so the same SVG works inline in HTML, in Jupyter and as a file.

use std::fmt::Write as _;

use crate::export::escape::html as esc;
use crate::output::Plot;

/// Okabe–Ito colours, distinguishable with the common colour-vision deficiencies (their yellow is
/// left out: it vanishes on white).
const PALETTE: [&str; 7] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
];

const PLOT_WIDTH: f64 = 560.0;
const PLOT_HEIGHT: f64 = 300.0;
const LEFT: f64 = 72.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 56.0;
const RIGHT: f64 = 16.0;
/// Rough width of one character at the 12 px label size, for sizing the legend.
const CHAR_WIDTH: f64 = 7.0;

/// One axis: the data interval widened to whole ticks, and the ticks.
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    decimals: usize,
    scientific: bool,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64>) -> Axis {
        let (mut lo, mut hi) = values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        } else if lo == hi {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            (lo, hi) = ((lo - pad).max(f64::MIN), (hi + pad).min(f64::MAX));
        }
        // Halves keep the span finite even for data near ±f64::MAX.
        let span = (hi / 2.0 - lo / 2.0) * 2.0;
        let step = nice_step(span / 5.0);
        let (first, last) = ((lo / step).floor(), (hi / step).ceil());
        let ticks: Vec<f64> = if step.is_finite() && step > 0.0 && last - first <= 20.0 {
            // Ticks are whole multiples of the step, so they print without rounding noise; a
            // zero is made positive so it never prints as "-0".
            (0..=(last - first) as usize)
                .map(|k| (first + k as f64) * step + 0.0)
                .collect()
        } else {
            Vec::new()
        };
        // Near ±f64::MAX a tick may round to infinity; then the data's ends are the ticks.
        let ticks = if ticks.len() >= 2 && ticks.iter().all(|t| t.is_finite()) {
            ticks
        } else {
            vec![lo, hi]
        };
        let (lo, hi) = (ticks[0].min(lo), ticks[ticks.len() - 1].max(hi));
        let magnitude = lo.abs().max(hi.abs());
        let scientific = magnitude >= 1e6 || (step < 1e-4 && step > 0.0);
        let decimals = if step < 1.0 && step > 0.0 {
            (-step.log10().floor()).clamp(0.0, 12.0) as usize
        } else {
            0
        };
        Axis {
            lo,
            hi,
            ticks,
            decimals,
            scientific,
        }
    }

    /// Where `v` falls between 0 (at `lo`) and 1 (at `hi`).
    fn fraction(&self, v: f64) -> f64 {
        (v / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0)
    }

    fn label(&self, v: f64) -> String {
        if self.scientific {
            format!("{v:.2e}")
        } else {
            format!("{v:.*}", self.decimals)
        }
    }
}

/// The 1, 2 or 5 times a power of ten nearest above `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return f64::NAN;
    }
    let power = 10f64.powf(raw.log10().floor());
    let mantissa = raw / power;
    let nice = if mantissa <= 1.0 {
        1.0
    } else if mantissa <= 2.0 {
        2.0
    } else if mantissa <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// The plot as a standalone SVG element.
pub fn plot_svg(plot: &Plot) -> String {
    let points = || plot.series.iter().flat_map(|s| s.points.iter());
    let x_axis = Axis::new(points().map(|p| p[0]));
    let y_axis = Axis::new(points().map(|p| p[1]));
    let longest_name = plot
        .series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let legend_width = if plot.series.is_empty() {
        0.0
    } else {
        (36.0 + CHAR_WIDTH * longest_name as f64).min(220.0)
    };
    let width = LEFT + PLOT_WIDTH + RIGHT + legend_width;
    let height = TOP + PLOT_HEIGHT + BOTTOM;
    let px = |x: f64| LEFT + x_axis.fraction(x) * PLOT_WIDTH;
    let py = |y: f64| TOP + (1.0 - y_axis.fraction(y)) * PLOT_HEIGHT;

    let mut svg = String::new();
    let title = plot.title.as_deref().unwrap_or("");
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" font-family=\"system-ui,-apple-system,Segoe UI,sans-serif\" \
         font-size=\"12\" fill=\"#1f2328\">"
    );
    let _ = writeln!(
        svg,
        "<title>{}</title>",
        esc(if title.is_empty() { "plot" } else { title })
    );
    let _ = writeln!(
        svg,
        "<rect width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>"
    );
    if !title.is_empty() {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"24\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"600\">{}</text>",
            LEFT + PLOT_WIDTH / 2.0,
            esc(title)
        );
    }

    // Grid and tick labels.
    for &tick in &x_axis.ticks {
        let x = px(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e6e8eb\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            TOP + PLOT_HEIGHT,
            TOP + PLOT_HEIGHT + 18.0,
            esc(&x_axis.label(tick))
        );
    }
    for &tick in &y_axis.ticks {
        let y = py(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e6e8eb\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + PLOT_WIDTH,
            LEFT - 8.0,
            y + 4.0,
            esc(&y_axis.label(tick))
        );
    }
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{PLOT_WIDTH}\" height=\"{PLOT_HEIGHT}\" fill=\"none\" stroke=\"#59636e\"/>"
    );
    if !plot.x_label.is_empty() {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + PLOT_WIDTH / 2.0,
            TOP + PLOT_HEIGHT + 42.0,
            esc(&plot.x_label)
        );
    }
    if !plot.y_label.is_empty() {
        let (x, y) = (18.0, TOP + PLOT_HEIGHT / 2.0);
        let _ = writeln!(
            svg,
            "<text x=\"{x}\" y=\"{y:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 {x} {y:.1})\">{}</text>",
            esc(&plot.y_label)
        );
    }
    if plot.series.iter().all(|s| {
        s.points
            .iter()
            .all(|p| !(p[0].is_finite() && p[1].is_finite()))
    }) {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#5b6570\">no data</text>",
            LEFT + PLOT_WIDTH / 2.0,
            TOP + PLOT_HEIGHT / 2.0
        );
    }

    // Lines, broken at non-finite points; a lone point between gaps is a dot.
    for (index, series) in plot.series.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        for run in series
            .points
            .split(|p| !(p[0].is_finite() && p[1].is_finite()))
            .filter(|run| !run.is_empty())
        {
            if let [point] = run {
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{:.2}\" cy=\"{:.2}\" r=\"2.5\" fill=\"{colour}\"/>",
                    px(point[0]),
                    py(point[1])
                );
            } else {
                let coordinates: Vec<String> = run
                    .iter()
                    .map(|p| format!("{:.2},{:.2}", px(p[0]), py(p[1])))
                    .collect();
                let _ = writeln!(
                    svg,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.75\" \
                     stroke-linejoin=\"round\" stroke-linecap=\"round\"/>",
                    coordinates.join(" ")
                );
            }
        }
    }

    // Legend, to the right of the frame.
    for (index, series) in plot.series.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        let x = LEFT + PLOT_WIDTH + RIGHT;
        let y = TOP + 8.0 + 18.0 * index as f64;
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"2.5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 20.0,
            x + 26.0,
            y + 4.0,
            esc(&series.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Series;

    fn plot(points: Vec<[f64; 2]>) -> Plot {
        Plot {
            title: Some("Loss <train>".into()),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![Series {
                name: "a&b".into(),
                points,
            }],
        }
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.23), 0.5);
        assert_eq!(nice_step(1.0), 1.0);
        assert_eq!(nice_step(140.0), 200.0);
        assert!(nice_step(0.0).is_nan());
    }

    #[test]
    fn ticks_cover_the_data_with_round_values() {
        let axis = Axis::new([0.3, 9.7].into_iter());
        assert_eq!(axis.ticks, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!((axis.lo, axis.hi), (0.0, 10.0));
        let axis = Axis::new([0.012, 0.031].into_iter());
        let labels: Vec<String> = axis.ticks.iter().map(|&t| axis.label(t)).collect();
        assert_eq!(
            labels,
            ["0.010", "0.015", "0.020", "0.025", "0.030", "0.035"]
        );
    }

    #[test]
    fn draws_axes_labels_legend_and_escapes() {
        let svg = plot_svg(&plot(vec![[0.0, 2.5], [1.0, 1.5], [2.0, 1.0]]));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("Loss &lt;train&gt;"));
        assert!(svg.contains(">a&amp;b</text>"));
        assert!(svg.contains("<polyline"));
        assert!(svg.contains(">step</text>") && svg.contains("rotate(-90"));
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn gaps_split_lines_and_lone_points_are_dots() {
        let svg = plot_svg(&plot(vec![
            [0.0, 1.0],
            [1.0, 2.0],
            [2.0, f64::NAN],
            [3.0, 1.0],
        ]));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
    }

    #[test]
    fn degenerate_data_does_not_break() {
        for points in [
            vec![],
            vec![[f64::NAN, f64::NAN]],
            vec![[5.0, 5.0]],
            vec![[-f64::MAX, f64::MAX], [f64::MAX, -f64::MAX]],
            vec![[1e-300, 0.0], [2e-300, 1e-300]],
        ] {
            let svg = plot_svg(&plot(points.clone()));
            assert!(
                !svg.contains("NaN") && !svg.contains("inf"),
                "{points:?}: {svg}"
            );
        }
    }
}
