//! The teaching picture: every node's true clock error over time, as an SVG line chart.

use std::path::Path;

use plotters::prelude::*;

use crate::scenario::RunResult;

/// Writes an SVG of each node's error (milliseconds) against time (seconds) to `path`.
pub fn error_chart(run: &RunResult, path: &Path) -> Result<(), String> {
    let range_ms = y_range_ms(run);
    let series: Vec<(String, Vec<(f64, f64)>)> = run
        .scenario
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let points = run
                .samples
                .iter()
                .filter(|s| s.node == index)
                .filter_map(|s| s.error.map(|e| (s.t, e * 1e3)))
                .collect();
            (node.name.clone(), points)
        })
        .collect();
    let chart = LineChart {
        title: format!("{}: clock error vs true time", run.scenario.name),
        x: ("time (s)", run.scenario.duration),
        y: ("error (ms)", range_ms),
        stroke: 2,
    };
    chart.draw(&series, path)
}

/// A line chart of error against time: one series per node, `y` clamped to +- its range.
#[derive(Debug)]
pub struct LineChart {
    /// The caption.
    pub title: String,
    /// The x axis: its label, and its range from 0.
    pub x: (&'static str, f64),
    /// The y axis: its label, and its range, symmetric around 0.
    pub y: (&'static str, f64),
    /// Line width, pixels.
    pub stroke: u32,
}

impl LineChart {
    /// Draws `series` (name, points) to an SVG file at `path`.
    pub fn draw(&self, series: &[(String, Vec<(f64, f64)>)], path: &Path) -> Result<(), String> {
        let range = self.y.1;
        let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..self.x.1, -range..range)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(self.x.0)
            .y_desc(self.y.0)
            .draw()
            .map_err(|e| e.to_string())?;
        for (index, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let clamped = points.iter().map(|(x, y)| (*x, y.clamp(-range, range)));
            chart
                .draw_series(LineSeries::new(clamped, color.stroke_width(self.stroke)))
                .map_err(|e| e.to_string())?
                .label(name.clone())
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
