//! An SVG plot of a sweep: acknowledged sends per second against clients
//! (left) and acknowledgement latency p50 / p99 against clients (right),
//! both with a logarithmic client axis.

use crate::stats::Figures;
use plotters::prelude::*;
use std::path::Path;

/// Writes the plot of `runs` (at least one) to `path`.
pub fn write_svg(path: &Path, runs: &[Figures]) -> anyhow::Result<()> {
    anyhow::ensure!(!runs.is_empty(), "nothing to plot");
    let root = SVGBackend::new(path, (1100, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (left, right) = root.split_horizontally(550);
    let max_clients = runs.iter().map(|r| r.clients).max().unwrap_or(1) as f64 * 1.5;
    let throughput: Vec<(f64, f64)> = runs.iter().map(|r| (r.clients as f64, r.ops_per_s)).collect();
    let p50: Vec<(f64, f64)> = runs.iter().map(|r| (r.clients as f64, r.p50_us as f64 / 1e3)).collect();
    let p99: Vec<(f64, f64)> = runs.iter().map(|r| (r.clients as f64, r.p99_us as f64 / 1e3)).collect();
    let panel = Panel { max_clients, caption: "acknowledged sends per second", y_desc: "acks/s" };
    panel.draw(&left, &[("acks/s", &throughput, BLUE)])?;
    let panel = Panel { max_clients, caption: "acknowledgement latency", y_desc: "ms" };
    panel.draw(&right, &[("p50", &p50, GREEN), ("p99", &p99, RED)])?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// One line of a chart: its label, its points and its colour.
type Series<'a> = (&'a str, &'a Vec<(f64, f64)>, RGBColor);

/// One chart.
struct Panel {
    max_clients: f64,
    caption: &'static str,
    y_desc: &'static str,
}

impl Panel {
    fn draw(
        &self,
        area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        series: &[Series<'_>],
    ) -> anyhow::Result<()> {
        let max_y = series.iter().flat_map(|(_, points, _)| points.iter().map(|p| p.1)).fold(0.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(self.caption, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((0.8f64..self.max_clients).log_scale(), 0f64..max_y.max(1.0))
            .map_err(plot_error)?;
        chart.configure_mesh().x_desc("clients").y_desc(self.y_desc).draw().map_err(plot_error)?;
        for &(label, points, color) in series {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(plot_error)?;
        Ok(())
    }
}

fn plot_error<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Latencies;

    #[test]
    fn a_sweep_plots_to_an_svg_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.svg");
        let runs: Vec<Figures> = [1, 16, 64]
            .iter()
            .map(|&clients| {
                let mut acks = Latencies::default();
                acks.record(300 * clients as u64);
                Figures::new(clients, 100, 1.0, &acks, &Latencies::default())
            })
            .collect();
        write_svg(&path, &runs).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("acknowledgement latency"), "{svg:.200}");
    }
}
