//! Parsing the hypervisor's exit summary lines:
//! `summary: guest=NAME exit=ok|fail key=N ...`

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub guest: String,
    pub ok: bool,
    pub counters: BTreeMap<String, u64>,
}

impl Summary {
    pub fn get(&self, key: &str) -> u64 {
        *self.counters.get(key).unwrap_or_else(|| panic!("summary has no '{key}': {self:?}"))
    }
}

pub fn parse_line(line: &str) -> Option<Summary> {
    let rest = line.trim().strip_prefix("summary: ")?;
    let mut guest = None;
    let mut ok = None;
    let mut counters = BTreeMap::new();
    for kv in rest.split_whitespace() {
        let (k, v) = kv.split_once('=')?;
        match k {
            "guest" => guest = Some(v.to_string()),
            "exit" => ok = Some(v == "ok"),
            _ => {
                counters.insert(k.to_string(), v.parse().ok()?);
            }
        }
    }
    Some(Summary { guest: guest?, ok: ok?, counters })
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
    }
}
