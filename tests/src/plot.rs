//! The teaching picture: every node's true clock error over time, as an SVG line chart.

use std::path::Path;

use plotters::prelude::*;

use crate::scenario::RunResult;

/// Writes an SVG of each node's error (milliseconds) against time (seconds) to `path`.
pub fn error_chart(run: &RunResult, path: &Path) -> Result<(), String> {
    let range_ms = y_range_ms(run);
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let title = format!("{}: clock error vs true time", run.scenario.name);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..run.scenario.duration, -range_ms..range_ms)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("error (ms)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (index, node) in run.scenario.nodes.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let points: Vec<(f64, f64)> = run
            .samples
            .iter()
            .filter(|s| s.node == index)
            .filter_map(|s| s.error.map(|e| (s.t, (e * 1e3).clamp(-range_ms, range_ms))))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(node.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// ± the scenario's plot range, or the largest client error in the second half times four
/// (at least 1 ms), so that convergence is visible and the settled error is not a flat line.
fn y_range_ms(run: &RunResult) -> f64 {
    if let Some(range) = run.scenario.plot_range {
        return range * 1e3;
    }
    let half = run.scenario.duration / 2.0;
    let settled = run
        .scenario
        .nodes
        .iter()
        .filter(|n| !n.sources.is_empty())
        .map(|n| run.worst(&n.name, half, f64::MAX))
        .fold(0.0, f64::max);
    (settled * 4e3).max(1.0)
}
