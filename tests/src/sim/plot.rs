//! A run drawn as the lab draws its scenarios: each client's error against true time, as SVG.

use std::path::Path;

use super::world::{RunResult, Scenario};
use crate::plot::LineChart;

/// Writes an SVG of every client's error (microseconds) against time (hours) to `path`.
pub fn error_chart(scenario: &Scenario, run: &RunResult, path: &Path) -> Result<(), String> {
    let settled = run
        .nodes
        .iter()
        .flat_map(|n| n.errors.iter().skip(n.errors.len() / 2))
        .fold(0.0f64, |m, e| m.max(e.abs()));
    let series: Vec<(String, Vec<(f64, f64)>)> = run
        .nodes
        .iter()
        .zip(&scenario.nodes)
        .filter(|(node, _)| !node.errors.is_empty())
        .map(|(node, spec)| {
            let start = spec.start.ceil();
            // A point a pixel is enough: a day has 86400 samples.
            let every = (node.errors.len() / 4000).max(1);
            let points = node
                .errors
                .iter()
                .enumerate()
                .step_by(every)
                .map(|(i, e)| ((start + i as f64) / 3600.0, e * 1e6))
                .collect();
            (spec.name.clone(), points)
        })
        .collect();
    let chart = LineChart {
        title: format!("{}: clock error vs true time (simulated)", scenario.name),
        x: ("time (h)", scenario.duration / 3600.0),
        y: ("error (us)", (settled * 1e6 * 2.0).max(10.0)),
        stroke: 1,
    };
    chart.draw(&series, path)
}
