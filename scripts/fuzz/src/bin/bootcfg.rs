//! The DTB and boot-argument parser: any blob, any command line. It must
//! never panic, and every error is one plain line.
#![no_main]
use libfuzzer_sys::fuzz_target;

fn one_line(s: &str) {
    assert!(!s.is_empty() && !s.chars().any(char::is_control), "not one plain line: {s:?}");
}

fuzz_target!(|data: &[u8]| {
    match bootcfg::parse(data) {
        Err(e) => one_line(&e.to_string()),
        Ok(c) => {
            for g in &c.guests {
                assert!(c.in_ram(g.image.0, g.image.1));
            }
        }
    }
    let _ = bootcfg::exit_method(data);
    let line = String::from_utf8_lossy(data);
    if let Err(e) = bootcfg::parse_bootargs(&line) {
        one_line(&e.to_string());
    }
});
