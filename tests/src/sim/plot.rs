//! A run drawn as the lab draws its scenarios: each client's error against true time, as SVG.

use std::path::Path;

use plotters::prelude::*;

use super::world::{RunResult, Scenario};

/// Writes an SVG of every client's error (microseconds) against time (hours) to `path`.
pub fn error_chart(scenario: &Scenario, run: &RunResult, path: &Path) -> Result<(), String> {
    let hours = scenario.duration / 3600.0;
    let settled = run
        .nodes
        .iter()
        .flat_map(|n| n.errors.iter().skip(n.errors.len() / 2))
        .fold(0.0f64, |m, e| m.max(e.abs()));
    let range = (settled * 1e6 * 2.0).max(10.0);
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: clock error vs true time (simulated)", scenario.name),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..hours, -range..range)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("time (h)")
        .y_desc("error (us)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (index, (node, spec)) in run.nodes.iter().zip(&scenario.nodes).enumerate() {
        if node.errors.is_empty() {
            continue;
        }
        let color = Palette99::pick(index).to_rgba();
        let start = spec.start.ceil();
        let points = node
            .errors
            .iter()
            .enumerate()
            .map(|(i, e)| ((start + i as f64) / 3600.0, (e * 1e6).clamp(-range, range)));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(1)))
            .map_err(|e| e.to_string())?
            .label(spec.name.clone())
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
