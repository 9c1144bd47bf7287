//! A hand-written SVG grouped bar chart (no plotting dependency): categories along the x axis,
//! one bar per series in each category, a logarithmic y axis with labelled ticks, and a legend.

use std::fmt::Write as _;

/// One series: a name (shown in the legend) and one value per category (`None` = no bar).
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend label.
    pub name: String,
    /// One value per category.
    pub values: Vec<Option<f64>>,
}

/// Colours of the series, in order.
const COLOURS: [&str; 6] = [
    "#7f7f7f", "#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders a grouped bar chart with a log10 y axis labelled `y_label`. Non-positive values are
/// drawn at the axis floor.
pub fn grouped_bars(
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[Series],
) -> String {
    let positives: Vec<f64> = series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let (lo_exp, hi_exp) = if positives.is_empty() {
        (-1i32, 1i32)
    } else {
        let min = positives.iter().copied().fold(f64::INFINITY, f64::min);
        let max = positives.iter().copied().fold(0.0, f64::max);
        let lo = min.log10().floor() as i32;
        let hi = (max.log10().ceil() as i32).max(lo + 1);
        (lo, hi)
    };
    let n_cat = categories.len().max(1);
    let n_ser = series.len().max(1);
    let bar_w = 14.0;
    let group_gap = 18.0;
    let group_w = bar_w * n_ser as f64 + group_gap;
    let left = 80.0;
    let top = 50.0;
    let plot_h = 320.0;
    let plot_w = (group_w * n_cat as f64).max(300.0);
    let bottom_labels = 110.0;
    let legend_w = 150.0;
    let width = left + plot_w + legend_w + 20.0;
    let height = top + plot_h + bottom_labels;
    let y_of = |v: f64| -> f64 {
        let e = if v > 0.0 && v.is_finite() {
            v.log10().clamp(lo_exp as f64, hi_exp as f64)
        } else {
            lo_exp as f64
        };
        top + plot_h - (e - lo_exp as f64) / (hi_exp - lo_exp) as f64 * plot_h
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.0}" y="24" font-size="16" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        escape(title)
    );
    // Y axis: a tick per decade, with 2x and 5x minor lines.
    for e in lo_exp..=hi_exp {
        let v = 10f64.powi(e);
        let y = y_of(v);
        let label = if e >= 0 {
            format!("{v:.0}")
        } else {
            format!("{v:.*}", (-e) as usize)
        };
        let _ = writeln!(
            s,
            r##"<line x1="{left:.0}" y1="{y:.1}" x2="{:.0}" y2="{y:.1}" stroke="#ccc"/><text x="{:.0}" y="{:.1}" text-anchor="end">{label}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0
        );
        if e < hi_exp {
            for m in [2.0, 5.0] {
                let y = y_of(v * m);
                let _ = writeln!(
                    s,
                    r##"<line x1="{left:.0}" y1="{y:.1}" x2="{:.0}" y2="{y:.1}" stroke="#eee"/>"##,
                    left + plot_w
                );
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left:.0}" y1="{top:.0}" x2="{left:.0}" y2="{:.0}" stroke="black"/><line x1="{left:.0}" y1="{:.0}" x2="{:.0}" y2="{:.0}" stroke="black"/>"##,
        top + plot_h,
        top + plot_h,
        left + plot_w,
        top + plot_h
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20,{:.0}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + plot_h / 2.0,
        escape(y_label)
    );
    // Bars.
    for (c, cat) in categories.iter().enumerate() {
        let x0 = left + group_gap / 2.0 + c as f64 * group_w;
        for (i, ser) in series.iter().enumerate() {
            let Some(v) = ser.values.get(c).copied().flatten() else {
                continue;
            };
            let y = y_of(v);
            let x = x0 + i as f64 * bar_w;
            let colour = COLOURS[i % COLOURS.len()];
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{}: {}: {v:.3}</title></rect>"#,
                bar_w - 1.0,
                (top + plot_h - y).max(0.0),
                escape(&ser.name),
                escape(cat)
            );
        }
        let cx = x0 + bar_w * n_ser as f64 / 2.0;
        let cy = top + plot_h + 12.0;
        let _ = writeln!(
            s,
            r#"<text transform="translate({cx:.1},{cy:.1}) rotate(45)" text-anchor="start" font-size="11">{}</text>"#,
            escape(cat)
        );
    }
    // Legend.
    let lx = left + plot_w + 20.0;
    for (i, ser) in series.iter().enumerate() {
        let ly = top + 10.0 + i as f64 * 20.0;
        let colour = COLOURS[i % COLOURS.len()];
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.0}" y="{:.0}" width="12" height="12" fill="{colour}"/><text x="{:.0}" y="{:.0}">{}</text>"#,
            ly - 10.0,
            lx + 18.0,
            ly,
            escape(&ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_every_series_and_bar() {
        let cats: Vec<String> = ["http1 1000/s p50", "http1 1000/s p99"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let series = vec![
            Series {
                name: "direct".into(),
                values: vec![Some(0.1), Some(0.4)],
            },
            Series {
                name: "trellis".into(),
                values: vec![Some(0.3), Some(1.2)],
            },
            Series {
                name: "envoy <1.40>".into(),
                values: vec![Some(0.35), None],
            },
        ];
        let svg = grouped_bars("latency", "ms (log scale)", &cats, &series);
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        for name in ["direct", "trellis", "envoy &lt;1.40&gt;"] {
            assert!(svg.contains(&format!(">{name}</text>")), "legend {name}");
        }
        // 5 bars with a tooltip each, plus the background and 3 legend swatches.
        assert_eq!(svg.matches("<title>").count(), 5);
        assert_eq!(svg.matches("<rect").count(), 5 + 1 + 3);
        assert!(svg.contains("http1 1000/s p99"));
        assert!(svg.contains(">1</text>"), "a decade tick label");
        assert!(svg.contains("ms (log scale)"));
    }

    #[test]
    fn empty_chart_is_valid() {
        let svg = grouped_bars("t", "y", &[], &[]);
        assert!(svg.contains("</svg>"));
    }
}
