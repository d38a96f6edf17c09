//! Parsing the hypervisor's exit summary lines:
//! `summary: guest=NAME exit=ok|fail key=N ... hwdom=yes|no [pinned=yes|no]`
//! (`hwdom=` and `pinned=` end the line once the kernel has hardware
//! domains; older lines lack them).

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub guest: String,
    pub ok: bool,
    pub counters: BTreeMap<String, u64>,
    /// `hwdom=yes|no`: whether the guest is the hardware domain (`None`
    /// when the line does not say).
    pub hwdom: Option<bool>,
    /// `pinned=yes|no`: the hardware domain's vCPUs pinned (`None` when
    /// the line does not say; only the hardware domain's says).
    pub pinned: Option<bool>,
}

impl Summary {
    pub fn get(&self, key: &str) -> u64 {
        *self.counters.get(key).unwrap_or_else(|| panic!("summary has no '{key}': {self:?}"))
    }

    /// True when the line says `hwdom=yes`.
    pub fn is_hwdom(&self) -> bool {
        self.hwdom == Some(true)
    }
}

fn yes_no(v: &str) -> Option<bool> {
    match v {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

pub fn parse_line(line: &str) -> Option<Summary> {
    let rest = line.trim().strip_prefix("summary: ")?;
    let mut guest = None;
    let mut ok = None;
    let mut counters = BTreeMap::new();
    let (mut hwdom, mut pinned) = (None, None);
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "guest" => guest = Some(v.to_string()),
            "exit" => ok = Some(v == "ok"),
            "hwdom" => hwdom = Some(yes_no(v)?),
            "pinned" => pinned = Some(yes_no(v)?),
            _ => {
                counters.insert(k.to_string(), v.parse().ok()?);
            }
        }
    }
    Some(Summary { guest: guest?, ok: ok?, counters, hwdom, pinned })
}

pub fn parse_all(transcript: &str) -> Vec<Summary> {
    transcript.lines().filter_map(parse_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let s = parse_line("summary: guest=sw-basic exit=ok sw_traps=17408 tvm_traps=9 stage2_faults=1 hvc=40").unwrap();
        assert_eq!(s.guest, "sw-basic");
        assert!(s.ok);
        assert_eq!(s.get("sw_traps"), 17408);
        assert!(parse_line("summary: guest=x exit=fail hvc=zz").is_none());
        assert!(!parse_line("summary: guest=x exit=fail").unwrap().ok);
        let old = parse_line("summary: guest=x exit=ok vcpus=1").unwrap();
        assert_eq!((old.hwdom, old.pinned, old.is_hwdom()), (None, None, false));
    }

    #[test]
    fn parses_the_hwdom_fields() {
        let h = parse_line("summary: guest=linux-arm64 exit=ok vcpus=1 sw_traps=0 migrations=0 restarts=0 hwdom=yes pinned=yes").unwrap();
        assert_eq!((h.hwdom, h.pinned, h.is_hwdom()), (Some(true), Some(true), true));
        assert_eq!(h.get("migrations"), 0);
        assert!(!h.counters.contains_key("hwdom"), "yes/no fields are not counters");
        let u = parse_line("summary: guest=d exit=ok migrations=3 hwdom=yes pinned=no").unwrap();
        assert_eq!(u.pinned, Some(false));
        let g = parse_line("summary: guest=sw-basic exit=ok sw_traps=4 hwdom=no").unwrap();
        assert_eq!((g.hwdom, g.pinned, g.is_hwdom()), (Some(false), None, false));
        assert!(parse_line("summary: guest=x exit=ok hwdom=maybe").is_none());
        assert_eq!(parse_all("boot\nsummary: guest=a exit=ok hwdom=yes pinned=yes\nsummary: guest=b exit=ok hwdom=no\n").len(), 2);
    }
}
