//! The cache oracle (tools/cache-oracle): building the QEMU plugin, the
//! `-plugin` arguments of a run, and reading its report.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::root;

/// What the oracle counted in one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub stale_reads: u64,
    pub lost_writes: u64,
    pub stale_lines: u64,
    /// Every `key=value` of the summary line.
    pub fields: Vec<(String, u64)>,
    /// The whole report: the summary and the first events.
    pub text: String,
}

impl Report {
    pub fn events(&self) -> u64 {
        self.stale_reads + self.lost_writes + self.stale_lines
    }

    /// Why this report cannot be trusted, if it cannot: the oracle saw no
    /// cacheable access, or could not read or decode what it had to.
    pub fn blind(&self) -> Option<String> {
        let n = |k: &str| self.get(k).unwrap_or(0);
        if n("cacheable") == 0 {
            return Some("the oracle saw no cacheable access".into());
        }
        for k in ["undecided", "unreadable", "unknown_sctlr"] {
            if n(k) > 0 {
                return Some(format!("the oracle was blind in part of the run ({k}={})", n(k)));
            }
        }
        None
    }

    pub fn get(&self, key: &str) -> Option<u64> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Parse the plugin's report; `None` without its summary line.
    pub fn parse(text: &str) -> Option<Report> {
        let line = text.lines().find(|l| l.starts_with("oracle: stale_reads="))?;
        let fields: Vec<(String, u64)> = line["oracle: ".len()..]
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        Some(Report {
            stale_reads: get("stale_reads")?,
            lost_writes: get("lost_writes")?,
            stale_lines: get("stale_lines")?,
            fields,
            text: text.to_string(),
        })
    }
}

/// Build the plugin (its own workspace and target dir) and return the .so.
pub fn plugin() -> Result<PathBuf, String> {
    let dir = root().join("tools/cache-oracle/plugin");
    let target = root().join("target/oracle");
    let st = Command::new(env!("CARGO"))
        .current_dir(&dir)
        .args(["build", "--quiet", "--release"])
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !st.success() {
        return Err("building the cache oracle plugin failed".into());
    }
    Ok(target.join("release/libcache_oracle.so"))
}

/// The physical range of the kernel's code: its executable PT_LOAD segments.
pub fn code_range(elf: &[u8]) -> Result<(u64, u64), String> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err("kernel: not a little-endian ELF64 file".into());
    }
    let u16at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = (u64at(32) as usize, u16at(54), u16at(56));
    let mut range: Option<(u64, u64)> = None;
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 56 > elf.len() {
            return Err("kernel: truncated program header".into());
        }
        // PT_LOAD with PF_X.
        if u32at(o) != 1 || u32at(o + 4) & 1 == 0 {
            continue;
        }
        let (pa, size) = (u64at(o + 24), u64at(o + 40));
        range = Some(match range {
            None => (pa, pa + size),
            Some((a, b)) => (a.min(pa), b.max(pa + size)),
        });
    }
    range.ok_or_else(|| "kernel: no executable segment".into())
}

/// QEMU arguments that load the oracle, writing its report to `report`.
/// Multi-threaded TCG (QEMU's default): with `thread=single`, QEMU 10.0
/// hands the plugin's instruction callbacks a wrong vCPU index.
/// `load` is where the position-independent kernel runs (its ELF is
/// linked at 0).
pub fn qemu_args(kernel: &Path, load: u64, cpus: u32, icount: bool, report: &Path) -> Result<Vec<String>, String> {
    if icount && cpus > 1 {
        // -icount means one TCG thread, whose vCPU indices the plugin API
        // gets wrong in QEMU 10.0.
        return Err("--oracle with --icount needs --cpus 1".into());
    }
    let so = plugin()?;
    let elf = std::fs::read(kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
    let (lo, hi) = code_range(&elf)?;
    let (lo, hi) = (lo + load, hi + load);
    let mut plugin = format!("{},out={},hyp={lo:x}-{hi:x},cpus={cpus}", so.display(), report.display());
    // ORACLE_WATCH=PA: the plugin prints every access to that line on
    // QEMU's stderr (read after the run: keep the trace short).
    if let Ok(w) = std::env::var("ORACLE_WATCH") {
        plugin += &format!(",watch={w}");
    }
    Ok(vec!["-plugin".into(), plugin])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse() {
        let text = "oracle: stale_reads=3 lost_writes=0 stale_lines=1 va_ops=9\noracle: stale_read pa=0x41000000 pcpu=0 el=1 pc=0x40080000 newest_data_in=L1 of pCPU1\n";
        let r = Report::parse(text).unwrap();
        assert_eq!((r.stale_reads, r.lost_writes, r.stale_lines, r.events()), (3, 0, 1, 4));
        assert_eq!(r.get("va_ops"), Some(9));
        assert!(Report::parse("oracle: nothing").is_none());
        assert!(Report::parse("").is_none());
        assert!(r.blind().is_some(), "no cacheable= field: blind");
        let ok = Report::parse("oracle: stale_reads=0 lost_writes=0 stale_lines=0 cacheable=5 undecided=0\n").unwrap();
        assert_eq!(ok.blind(), None);
        let bad = Report::parse("oracle: stale_reads=0 lost_writes=0 stale_lines=0 cacheable=5 unknown_sctlr=2\n").unwrap();
        assert!(bad.blind().unwrap().contains("unknown_sctlr=2"));
    }
}
