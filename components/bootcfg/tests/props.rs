//! Property tests: nothing panics on any input; valid input round-trips.

mod common;

use bootcfg::fdt::Fdt;
use bootcfg::fdt_writer::FdtWriter;
use bootcfg::*;
use common::*;
use proptest::prelude::*;

/// Parse, and if the blob is accepted, touch every node and property the
/// way lookups do.
fn exercise(b: &[u8]) {
    if let Ok(f) = Fdt::new(b) {
        for p in f.walk() {
            let n = p.node();
            let _ = (n.name(), n.base_name(), n.is_enabled(), p.parent());
            for pr in n.props() {
                let _ = (
                    pr.as_str(),
                    pr.as_u32(),
                    pr.as_u64(),
                    pr.strs().count(),
                    pr.cells().count(),
                );
            }
            let _ = n.children().count();
        }
        let _ = f.reservations().count();
        let _ = f.find("/chosen/module@50000000");
    }
    let _ = (console(b), bundle_range(b), exit_method(b));
    // The bytes as a bundle, beside a valid tree.
    static DTB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let dtb = DTB.get_or_init(default_dtb);
    let _ = exit_method_with_bundle(dtb, Some((0x6000_0000, b)));
    if let Err(e) = parse_with_bundle(dtb, Some((0x6000_0000, b))) {
        let s = e.to_string();
        assert!(
            !s.is_empty() && !s.chars().any(char::is_control),
            "not one plain line: {s:?}"
        );
    }
    match parse(b) {
        Err(e) => {
            let s = e.to_string();
            assert!(
                !s.is_empty() && !s.chars().any(char::is_control),
                "not one plain line: {s:?}"
            );
        }
        Ok(c) => {
            let irqs = c
                .gic
                .and_then(|g| g.maint)
                .into_iter()
                .chain(c.uart.and_then(|u| u.irq));
            let t = c
                .timer
                .map(|t| [t.sec_phys, t.phys, t.virt, t.hyp])
                .into_iter()
                .flatten();
            for i in irqs.chain(t) {
                let _ = i.intid();
            }
        }
    }
}

/// A header whose blocks all point into `body`, so fuzzing reaches the
/// structure walk.
fn with_header(body: &[u8], strings_len: usize) -> Vec<u8> {
    let strings_len = strings_len.min(body.len());
    let off = 56u32;
    let total = off as usize + body.len();
    let size_struct = body.len() - strings_len;
    let mut v = Vec::new();
    for x in [
        0xd00d_feed,
        total as u32,
        off,
        off + size_struct as u32,
        40,
        17,
        16,
        0,
        strings_len as u32,
        size_struct as u32,
    ] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.extend_from_slice(&[0; 16]);
    v.extend_from_slice(body);
    v
}

fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    let tok = prop_oneof![
        Just(vec![0, 0, 0, 1, 0, 0, 0, 0]),
        Just(vec![0, 0, 0, 1, b'a', b'@', b'1', 0]),
        Just(vec![0, 0, 0, 2]),
        Just(vec![0, 0, 0, 4]),
        Just(vec![0, 0, 0, 9]),
        (0u32..16, 0u32..24).prop_map(|(len, nameoff)| {
            let mut v = vec![0, 0, 0, 3];
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&nameoff.to_be_bytes());
            v.extend(std::iter::repeat_n(0x41, ((len + 3) & !3) as usize));
            v
        }),
        prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop::collection::vec(tok, 0..40).prop_map(|v| {
        let mut b: Vec<u8> = v.concat();
        b.extend_from_slice(b"reg\0compatible\0#address-cells\0");
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..600)) {
        exercise(&b);
    }

    #[test]
    fn random_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..400), sl in 0usize..64) {
        exercise(&with_header(&body, sl));
    }

    #[test]
    fn token_soup_never_panics(body in token_soup()) {
        exercise(&with_header(&body, 30));
    }

    #[test]
    fn mutated_dtb_never_panics(
        muts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        header in prop::collection::vec((0usize..10, prop_oneof![any::<u32>(), 0u32..2048]), 0..3),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let mut b = default_dtb();
        for (i, v) in muts {
            let i = i.index(b.len());
            b[i] = v;
        }
        for (field, v) in header {
            b[field * 4..field * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        if do_cut {
            b.truncate(cut.index(b.len()));
        }
        exercise(&b);
    }

    #[test]
    fn mutated_bundle_never_panics(
        muts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
        base in prop_oneof![Just(0x6000_0000u64), any::<u64>()],
    ) {
        let chosen = |w: &mut FdtWriter| {
            chosen_cells(w);
            w.prop_str("hyp,bootargs", "sched=null");
            kernel(w, 0x1000, 0x1000, &|w| w.prop_str("hyp,name", "b"));
            ramdisk(w, 0x2000, 0x1000);
        };
        let mut b = guest_bundle(&chosen, 0x3000);
        let fdt_len = bootcfg::fdt::total_size(&b).unwrap();
        for (i, v) in muts {
            let i = i.index(fdt_len);
            b[i] = v;
        }
        if do_cut {
            b.truncate(cut.index(b.len()));
        }
        exercise(&b);
        let dtb = default_dtb();
        let _ = exit_method_with_bundle(&dtb, Some((base, &b)));
        match parse_with_bundle(&dtb, Some((base, &b))) {
            Err(e) => {
                let s = e.to_string();
                prop_assert!(!s.is_empty() && !s.chars().any(char::is_control), "{}", s);
            }
            Ok(c) => {
                for g in &c.guests {
                    prop_assert!(c.in_ram(g.image.0, g.image.1));
                }
            }
        }
    }

    #[test]
    fn bootargs_never_panic(s in ".{0,80}") {
        if let Err(e) = parse_bootargs(&s) {
            let m = e.to_string();
            prop_assert!(m.starts_with("bootargs: "));
        }
    }

    #[test]
    fn bootargs_token_soup(parts in prop::collection::vec((
        prop::sample::select(vec!["sched", "hwdom_pin", "slice", "loglevel", "console", "guest0.mem",
            "guest1.vcpus", "guest3.sw", "guest2.name", "guest9.mem", "guest0.x", "", "guest0."]),
        prop::sample::select(vec!["rr", "pinned", "null", "auto", "on", "off", "yes", "no", "64K", "2M",
            "0x1000", "1G", "8", "0", "trace", "3", "", "=", "ab.c", "99999999999999999999999"]),
        any::<bool>(),
    ), 0..8)) {
        let line: Vec<String> = parts.iter().map(|(k, v, eq)| if *eq { format!("{k}={v}") } else { k.to_string() }).collect();
        let line = line.join(" ");
        match parse_bootargs(&line) {
            Ok(a) => {
                if let Some(s) = a.slice { prop_assert!(s >= 4096 && s % 4096 == 0); }
                for g in a.guests {
                    if let Some(m) = g.mem { prop_assert!(m >= 2 << 20 && m % 4096 == 0); }
                    if let Some(v) = g.vcpus { prop_assert!((1..=8).contains(&v)); }
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("bootargs: ")),
        }
    }

    /// Valid guests, written and read back.
    #[test]
    fn valid_guests_round_trip(
        guests in prop::collection::vec((1u32..=8, 1u64..=512, 0usize..3, any::<bool>(), "[a-z0-9]{1,16}"), 0..=4),
        sched in 0usize..3,
    ) {
        let sw = [SwMode::Yes, SwMode::No, SwMode::Auto];
        let sw_s = ["yes", "no", "auto"];
        let sched_s = ["rr", "pinned", "null"];
        let line = format!("sched={}", sched_s[sched]);
        let gs = guests.clone();
        let chosen = move |w: &mut FdtWriter| {
            chosen_cells(w);
            w.prop_str("hyp,bootargs", &line);
            for (i, (vcpus, mem_m, s, rd, name)) in gs.iter().enumerate() {
                let base = 0x4000_0000 + (i as u64) * 0x1000_0000;
                kernel(w, base, 0x10_0000, &|w| {
                    w.prop_u32("hyp,vcpus", *vcpus);
                    w.prop_u64("hyp,mem", mem_m * 2 * MIB);
                    w.prop_str("hyp,sw", sw_s[*s]);
                    w.prop_str("hyp,name", name);
                });
                if *rd {
                    ramdisk(w, base + 0x80_0000, 0x10_0000);
                }
            }
        };
        let c = parse(&build(&Parts { chosen: &chosen, ..Parts::default() })).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(c.sched, [SchedKind::Rr, SchedKind::Pinned, SchedKind::Null][sched]);
        prop_assert_eq!(c.guests.len(), guests.len());
        for (g, (vcpus, mem_m, s, rd, name)) in c.guests.iter().zip(&guests) {
            prop_assert_eq!(g.vcpus, *vcpus);
            prop_assert_eq!(g.mem_bytes, mem_m * 2 * MIB);
            prop_assert_eq!(g.sw, sw[*s]);
            prop_assert_eq!(g.ramdisk.is_some(), *rd);
            prop_assert_eq!(g.name.as_str(), name.as_str());
        }
    }
}
