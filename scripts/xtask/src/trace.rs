//! `cargo xtask run --trace FILE` and `cargo xtask plot`: the hypervisor's
//! `trace:` lines (boot argument `trace=MS`: every guest's cumulative
//! counters on pCPU 0's tick) as CSV, and a picture of them as SVG.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// How often the hypervisor prints its counters under `--trace` (ms).
pub const PERIOD_MS: u32 = 100;

/// The counters of a `trace:` line, in CSV column order after `ms,guest`.
pub const COLUMNS: [&str; 9] =
    ["populated", "pod_2m", "pod_4k", "cleaned", "cleans", "sw_traps", "tvm_traps", "stage2_faults", "migrations"];

/// One guest's counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub ms: u64,
    pub guest: String,
    pub values: [u64; COLUMNS.len()],
}

impl Row {
    pub fn get(&self, column: &str) -> u64 {
        COLUMNS.iter().position(|c| *c == column).map_or(0, |i| self.values[i])
    }
}

/// Every `trace:` line of a console transcript.
pub fn parse(transcript: &str) -> Vec<Row> {
    // The hypervisor prints them at the start of a line.
    transcript.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Row> {
    let fields: BTreeMap<&str, &str> = line.strip_prefix("trace: ")?.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
    let mut values = [0; COLUMNS.len()];
    for (v, c) in values.iter_mut().zip(COLUMNS) {
        *v = fields.get(c)?.parse().ok()?;
    }
    Some(Row { ms: fields.get("ms")?.parse().ok()?, guest: fields.get("guest")?.to_string(), values })
}

pub fn to_csv(rows: &[Row]) -> String {
    let mut s = format!("ms,guest,{}\n", COLUMNS.join(","));
    for r in rows {
        let v: Vec<String> = r.values.iter().map(u64::to_string).collect();
        s += &format!("{},{},{}\n", r.ms, r.guest, v.join(","));
    }
    s
}

pub fn from_csv(text: &str) -> Result<Vec<Row>, String> {
    let mut lines = text.lines();
    let header = lines.next().ok_or("an empty trace file")?;
    if header != format!("ms,guest,{}", COLUMNS.join(",")) {
        return Err(format!("not a trace file (its first line is '{header}')"));
    }
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split(',').collect();
            let bad = || format!("line {}: '{l}' is not ms,guest and {} numbers", i + 2, COLUMNS.len());
            if f.len() != COLUMNS.len() + 2 {
                return Err(bad());
            }
            let mut values = [0; COLUMNS.len()];
            for (v, t) in values.iter_mut().zip(&f[2..]) {
                *v = t.parse().map_err(|_| bad())?;
            }
            Ok(Row { ms: f[0].parse().map_err(|_| bad())?, guest: f[1].to_string(), values })
        })
        .collect()
}

/// Write the trace of a run's transcript to `path`; how many rows.
pub fn save(transcript: &str, path: &Path) -> Result<usize, String> {
    let rows = parse(transcript);
    std::fs::write(path, to_csv(&rows)).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(rows.len())
}

/// `cargo xtask plot`'s options.
#[derive(clap::Parser, Debug)]
#[command(about = "Draw traces from `cargo xtask run --trace`: memory populated, bytes cleaned, traps over time", disable_version_flag = true, args_override_self = true)]
struct PlotOpts {
    /// The traces (CSV), one line per guest and trace.
    #[arg(required = true, value_name = "TRACE.csv")]
    files: Vec<PathBuf>,
    /// The picture (default: the first trace's name with .svg).
    #[arg(long, value_name = "FILE.svg")]
    out: Option<PathBuf>,
}

/// `cargo xtask plot FILE... [--out SVG]`.
pub fn plot_cli(argv: &[String]) -> Result<u8, String> {
    let Some(PlotOpts { files, out }) = crate::parse_cli::<PlotOpts>("plot", argv)? else { return Ok(0) };
    let first = &files[0];
    let out = out.unwrap_or_else(|| first.with_extension("svg"));
    let mut traces = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let rows = from_csv(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        let label = f.file_stem().map_or("trace".into(), |s| s.to_string_lossy().into_owned());
        traces.push((label, rows));
    }
    plot(&traces, &out)?;
    println!("{}", out.display());
    Ok(0)
}

/// One line per (trace, guest): its points of `value(row)` over seconds.
type Series = Vec<(String, Vec<(f64, f64)>)>;

fn series(traces: &[(String, Vec<Row>)], value: impl Fn(&Row) -> f64) -> Series {
    let mut out = Series::new();
    for (label, rows) in traces {
        let guests: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.guest.as_str()).collect();
        for &g in &guests {
            let name = if guests.len() > 1 { format!("{label} {g}") } else { label.clone() };
            // Seconds since the hypervisor started: an eager guest's late
            // start (all its RAM zeroed first) shows.
            let points = rows.iter().filter(|r| r.guest == g).map(|r| (r.ms as f64 / 1000.0, value(r))).collect();
            out.push((name, points));
        }
    }
    out
}

/// Three panels over time: memory populated, bytes cleaned, set/way and
/// TVM traps; one line per guest of each trace.
pub fn plot(traces: &[(String, Vec<Row>)], out: &Path) -> Result<(), String> {
    if traces.iter().all(|(_, r)| r.is_empty()) {
        return Err("the traces hold no rows (was the run made with --trace?)".into());
    }
    const MIB: f64 = 1024.0 * 1024.0;
    let panels: [(&str, &str, Series); 3] = [
        ("memory populated", "MiB", series(traces, |r| r.get("populated") as f64 / MIB)),
        ("bytes cleaned (cumulative)", "MiB", series(traces, |r| r.get("cleaned") as f64 / MIB)),
        ("set/way + TVM traps (cumulative)", "traps", series(traces, |r| (r.get("sw_traps") + r.get("tvm_traps")) as f64)),
    ];
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", out.display());
    let root = SVGBackend::new(out, (900, 1050)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((3, 1));
    for ((title, unit, lines), area) in panels.iter().zip(areas.iter()) {
        let x_max = lines.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).fold(0.1, f64::max);
        let y_max = lines.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold(1.0, f64::max) * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(*title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc("seconds since the hypervisor started").y_desc(*unit).draw().map_err(|e| err(&e))?;
        for (k, (name, points)) in lines.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "boot\n\
        trace: ms=100 guest=a populated=2097152 pod_2m=1 pod_4k=0 cleaned=0 cleans=0 sw_traps=0 tvm_traps=0 stage2_faults=3 migrations=0\n\
        trace: ms=200 guest=a populated=4194304 pod_2m=2 pod_4k=0 cleaned=4096 cleans=1 sw_traps=9 tvm_traps=2 stage2_faults=5 migrations=1\n\
        [a] a guest's trace: ms=250 guest=a populated=1 pod_2m=0 pod_4k=0 cleaned=0 cleans=0 sw_traps=0 tvm_traps=0 stage2_faults=0 migrations=0\n\
        trace: ms=300 guest=a populated=oops\n";

    #[test]
    fn lines_round_trip_through_csv_and_bad_ones_are_skipped() {
        let rows = parse(LOG);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].ms, rows[1].get("sw_traps"), rows[1].get("populated")), (200, 9, 4 << 20));
        assert_eq!(from_csv(&to_csv(&rows)).unwrap(), rows);
        assert!(from_csv("ms,guest\n").unwrap_err().contains("not a trace file"));
        let bad = format!("{}1,a,2\n", to_csv(&[]));
        assert!(from_csv(&bad).unwrap_err().contains("line 2"));
    }

    #[test]
    fn the_plot_draws_one_line_per_guest_and_trace() {
        let out = std::env::temp_dir().join(format!("xtask-plot-{}.svg", std::process::id()));
        let rows = parse(LOG);
        plot(&[("pod".into(), rows.clone()), ("eager".into(), rows)], &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        assert!(svg.starts_with("<svg"));
        // Each panel: one legend entry per trace, and the line's points.
        assert_eq!(svg.matches(">\npod\n<").count(), 3, "{svg}");
        assert_eq!(svg.matches(">\neager\n<").count(), 3);
        assert!(svg.contains("memory populated") && svg.contains("bytes cleaned") && svg.contains("traps"));
        assert!(svg.matches("<polyline").count() >= 3 * 2 * 2);
        assert!(plot(&[("x".into(), Vec::new())], &out).is_err());
    }
}
