//! The hypervisor command line: every key, every error line.

use bootcfg::*;

fn err(line: &str) -> String {
    match parse_bootargs(line) {
        Ok(a) => panic!("expected an error for {line:?}, got {a:?}"),
        Err(e) => e.to_string(),
    }
}

/// The keys an error lists. A test-only `faults` build also knows `fault`.
#[cfg(not(feature = "faults"))]
const KEYS: &str = "sched, hwdom_pin, slice, loglevel, exit, pmu, reboots, trace, maxcpus, console, guestN.mem, guestN.pool, guestN.populate, guestN.vcpus, guestN.sw, guestN.name, guestN.hwdom, guestN.base, guestN.passthrough";
#[cfg(feature = "faults")]
const KEYS: &str = "sched, hwdom_pin, slice, loglevel, exit, pmu, reboots, trace, maxcpus, console, guestN.mem, guestN.pool, guestN.populate, guestN.vcpus, guestN.sw, guestN.name, guestN.hwdom, guestN.base, guestN.passthrough, fault";

#[test]
fn empty_and_defaults() {
    for line in [
        "",
        "   ",
        "\n\t",
        "console=ttyAMA0",
        "console=hvc0,115200 console=",
    ] {
        assert_eq!(parse_bootargs(line).unwrap(), Args::default(), "{line:?}");
    }
}

#[test]
fn every_key() {
    let a = parse_bootargs(
        "sched=null hwdom_pin=on slice=128K loglevel=trace exit=semihosting guest0.mem=64M\tguest0.vcpus=4 guest0.sw=no \
         guest0.name=dom0 guest0.pool=32M guest0.populate=eager guest3.mem=0x200000 guest3.sw=auto\n",
    )
    .unwrap();
    assert_eq!(a.sched, Some(SchedKind::Null));
    assert_eq!(a.hwdom_pin, Some(HwdomPin::On));
    assert_eq!(a.slice, Some(128 << 10));
    assert_eq!(a.loglevel, Some(LogLevel::Trace));
    assert_eq!(a.exit, Some(ExitMethod::Semihosting));
    assert_eq!(a.guests[0].mem, Some(64 << 20));
    assert_eq!(a.guests[0].vcpus, Some(4));
    assert_eq!(a.guests[0].sw, Some(SwMode::No));
    assert_eq!(a.guests[0].name, Some("dom0"));
    assert_eq!(a.guests[0].pool, Some(32 << 20));
    assert_eq!(a.guests[0].populate, Some(bootcfg::Populate::Eager));
    assert_eq!(a.guests[0].first_token, Some("guest0.mem=64M"));
    assert_eq!(a.guests[1], GuestArgs::default());
    assert_eq!(a.guests[3].mem, Some(2 << 20));
    assert_eq!(a.guests[3].sw, Some(SwMode::Auto));

    for (v, k) in [
        ("rr", SchedKind::Rr),
        ("pinned", SchedKind::Pinned),
        ("null", SchedKind::Null),
    ] {
        assert_eq!(
            parse_bootargs(&format!("sched={v}")).unwrap().sched,
            Some(k)
        );
    }
    for (v, k) in [
        ("auto", HwdomPin::Auto),
        ("on", HwdomPin::On),
        ("off", HwdomPin::Off),
    ] {
        assert_eq!(
            parse_bootargs(&format!("hwdom_pin={v}")).unwrap().hwdom_pin,
            Some(k)
        );
    }
    for (v, k) in [
        ("yes", SwMode::Yes),
        ("no", SwMode::No),
        ("auto", SwMode::Auto),
    ] {
        assert_eq!(
            parse_bootargs(&format!("guest1.sw={v}")).unwrap().guests[1].sw,
            Some(k)
        );
    }
    let levels = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];
    for (i, (name, k)) in ["error", "warn", "info", "debug", "trace"]
        .iter()
        .zip(levels)
        .enumerate()
    {
        assert_eq!(
            parse_bootargs(&format!("loglevel={name}"))
                .unwrap()
                .loglevel,
            Some(k)
        );
        assert_eq!(
            parse_bootargs(&format!("loglevel={i}")).unwrap().loglevel,
            Some(k)
        );
    }
    for (v, bytes) in [
        ("4K", 4096),
        ("4096", 4096),
        ("1M", 1 << 20),
        ("1G", 1 << 30),
        ("0x10000", 0x10000),
        ("8k", 8192),
    ] {
        assert_eq!(
            parse_bootargs(&format!("slice={v}")).unwrap().slice,
            Some(bytes),
            "{v}"
        );
    }
    for v in ["1", "8"] {
        assert!(parse_bootargs(&format!("guest0.vcpus={v}")).is_ok());
    }
    for (v, n) in [("1", 1), ("4", 4), ("8", 8), ("0x2", 2)] {
        assert_eq!(parse_bootargs(&format!("maxcpus={v}")).unwrap().max_cpus, Some(n), "{v}");
    }
    assert_eq!(parse_bootargs("sched=rr").unwrap().max_cpus, None);
    // A value may itself contain '='.
    assert!(parse_bootargs("console=a=b").is_ok());
}

#[test]
fn every_error() {
    let table = [
        ("sched=foo", "bootargs: sched=foo: unknown scheduler (allowed: rr, pinned, null)"),
        ("sched=", "bootargs: sched=: unknown scheduler (allowed: rr, pinned, null)"),
        ("sched=RR", "bootargs: sched=RR: unknown scheduler (allowed: rr, pinned, null)"),
        ("hwdom_pin=yes", "bootargs: hwdom_pin=yes: unknown setting (allowed: auto, on, off)"),
        ("slice=lots", "bootargs: slice=lots: not a size (allowed: a size such as 64K: 4K to 1G, a multiple of 4K)"),
        ("slice=2K", "bootargs: slice=2K: out of range (allowed: a size such as 64K: 4K to 1G, a multiple of 4K)"),
        ("slice=2G", "bootargs: slice=2G: out of range (allowed: a size such as 64K: 4K to 1G, a multiple of 4K)"),
        ("slice=5000", "bootargs: slice=5000: out of range (allowed: a size such as 64K: 4K to 1G, a multiple of 4K)"),
        ("slice=99999999999999999999", "bootargs: slice=99999999999999999999: not a size (allowed: a size such as 64K: 4K to 1G, a multiple of 4K)"),
        ("slice=17179869184G", "bootargs: slice=17179869184G: not a size (allowed: a size such as 64K: 4K to 1G, a multiple of 4K)"),
        ("slice=-4K", "bootargs: slice=-4K: not a size (allowed: a size such as 64K: 4K to 1G, a multiple of 4K)"),
        ("slice=K", "bootargs: slice=K: not a size (allowed: a size such as 64K: 4K to 1G, a multiple of 4K)"),
        ("slice=0x", "bootargs: slice=0x: not a size (allowed: a size such as 64K: 4K to 1G, a multiple of 4K)"),
        ("loglevel=5", "bootargs: loglevel=5: unknown level (allowed: error, warn, info, debug, trace, or 0 to 4)"),
        ("guest0.mem=1M", "bootargs: guest0.mem=1M: out of range (allowed: a size such as 64M: at least 2M, a multiple of 4K)"),
        ("guest0.mem=2097153", "bootargs: guest0.mem=2097153: out of range (allowed: a size such as 64M: at least 2M, a multiple of 4K)"),
        ("exit=reboot", "bootargs: exit=reboot: unknown exit method (allowed: psci, semihosting)"),
        ("pmu=on", "bootargs: pmu=on: unknown PMU mode (allowed: hidden, passthrough)"),
        ("reboots=1001", "bootargs: reboots=1001: out of range (allowed: 0 to 1000)"),
        ("reboots=many", "bootargs: reboots=many: out of range (allowed: 0 to 1000)"),
        ("trace=5", "bootargs: trace=5: out of range (allowed: a period in milliseconds, 10 to 60000)"),
        ("trace=fast", "bootargs: trace=fast: out of range (allowed: a period in milliseconds, 10 to 60000)"),
        ("maxcpus=0", "bootargs: maxcpus=0: out of range (allowed: 1 to 8)"),
        ("maxcpus=9", "bootargs: maxcpus=9: out of range (allowed: 1 to 8)"),
        ("maxcpus=4294967297", "bootargs: maxcpus=4294967297: out of range (allowed: 1 to 8)"),
        ("maxcpus=", "bootargs: maxcpus=: not a number (allowed: 1 to 8)"),
        ("maxcpus=two", "bootargs: maxcpus=two: not a number (allowed: 1 to 8)"),
        ("maxcpus=-1", "bootargs: maxcpus=-1: not a number (allowed: 1 to 8)"),
        ("maxcpus=2 maxcpus=2", "bootargs: maxcpus=2: given twice (allowed: each key once)"),
        ("guest0.populate=lazy", "bootargs: guest0.populate=lazy: unknown population mode (allowed: demand, eager)"),
        ("guest0.pool=1M", "bootargs: guest0.pool=1M: out of range (allowed: a size such as 64M: at least 2M, a multiple of 4K)"),
        ("guest0.mem=64MB", "bootargs: guest0.mem=64MB: not a size (allowed: a size such as 64M: at least 2M, a multiple of 4K)"),
        ("guest0.vcpus=0", "bootargs: guest0.vcpus=0: out of range (allowed: 1 to 8)"),
        ("guest0.vcpus=9", "bootargs: guest0.vcpus=9: out of range (allowed: 1 to 8)"),
        ("guest0.vcpus=4294967297", "bootargs: guest0.vcpus=4294967297: out of range (allowed: 1 to 8)"),
        ("guest0.vcpus=two", "bootargs: guest0.vcpus=two: not a number (allowed: 1 to 8)"),
        ("guest0.sw=maybe", "bootargs: guest0.sw=maybe: unknown set/way mode (allowed: yes, no, auto)"),
        ("guest0.name=", "bootargs: guest0.name=: bad name (allowed: 1 to 16 of a-z, A-Z, 0-9, '-', '_', '.')"),
        ("guest0.name=a/b", "bootargs: guest0.name=a/b: bad name (allowed: 1 to 16 of a-z, A-Z, 0-9, '-', '_', '.')"),
        ("guest0.name=abcdefghijklmnopq", "bootargs: guest0.name=abcdefghijklmnopq: bad name (allowed: 1 to 16 of a-z, A-Z, 0-9, '-', '_', '.')"),
        ("guest4.mem=64M", "bootargs: guest4.mem=64M: bad guest number (allowed: guest0 to guest3)"),
        ("guest10.mem=64M", "bootargs: guest10.mem=64M: bad guest number (allowed: guest0 to guest3)"),
        ("guest.mem=64M", "bootargs: guest.mem=64M: bad guest number (allowed: guest0 to guest3)"),
        ("guest0.cpus=2", "bootargs: guest0.cpus=2: unknown guest key (allowed: mem, pool, populate, vcpus, sw, name, hwdom, base, passthrough)"),
        ("sched=rr sched=null", "bootargs: sched=null: given twice (allowed: each key once)"),
        ("guest1.vcpus=1 guest1.vcpus=2", "bootargs: guest1.vcpus=2: given twice (allowed: each key once)"),
    ];
    for (line, want) in table {
        assert_eq!(err(line), want, "{line:?}");
    }
    for line in ["shed=rr", "guest0mem=2M", "dom0_mem=512M"] {
        assert_eq!(err(line), format!("bootargs: {line}: unknown key (allowed: {KEYS})"));
    }
    assert_eq!(err("quiet"), format!("bootargs: quiet: expected key=value (allowed: {KEYS})"));
    // The first bad token is the one reported.
    assert_eq!(err("sched=rr foo=1 bar=2"), err("foo=1"));
}

#[test]
fn sizes() {
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("16G"), Some(16 << 30));
    assert_eq!(parse_size("0X1f"), Some(31));
    assert_eq!(parse_size("0x1fM"), Some(31 << 20));
    assert_eq!(parse_size("18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_size("18446744073709551616"), None);
    assert_eq!(parse_size(""), None);
    assert_eq!(parse_size("+1"), None);
    assert_eq!(parse_size("1 M"), None);
    assert_eq!(parse_size("1T"), None);
    assert_eq!(parse_size("é"), None);
    assert_eq!(parse_size("1é"), None);
}

/// A normal build has no `fault=` key: it is an unknown key like any other,
/// the error does not offer it, and nothing can turn a fault on.
#[cfg(not(feature = "faults"))]
#[test]
fn no_fault_key_in_a_normal_build() {
    for line in ["fault=sw-unpinned", "fault=no-pod-clean,clean-skips-walk", "fault="] {
        let e = err(line);
        assert_eq!(e, format!("bootargs: {line}: unknown key (allowed: {KEYS})"));
        let allowed = e.split_once("(allowed: ").unwrap().1;
        assert!(!allowed.contains("fault"), "{e}");
    }
    assert!(!err("quiet").contains("fault"));
    assert_eq!(Args::default().faults, None);
    for (_, f) in Faults::NAMES {
        assert!(!f.contains(f), "a normal build never has a fault active");
    }
}

/// TEST ONLY `faults` build (`cargo test -p bootcfg --features faults`):
/// `fault=NAME[,NAME...]` is accepted, checked, and reaches the config.
#[cfg(feature = "faults")]
#[test]
fn fault_key_in_a_faults_build() {
    let f = |line: &str| parse_bootargs(line).unwrap().faults.unwrap();
    assert!(f("fault=sw-unpinned").contains(Faults::SW_UNPINNED));
    assert!(!f("fault=sw-unpinned").contains(Faults::NO_POD_CLEAN));
    let all = f("fault=no-pod-clean,clean-skips-walk,sw-unpinned");
    for (_, x) in Faults::NAMES {
        assert!(all.contains(x));
    }
    assert_eq!(
        all.names().collect::<Vec<_>>(),
        ["sw-unpinned", "no-pod-clean", "clean-skips-walk"]
    );
    let one = f("fault=clean-skips-walk");
    assert_eq!(one.names().collect::<Vec<_>>(), ["clean-skips-walk"]);
    assert!(!one.is_empty());
    assert!(Faults::default().is_empty());
    assert_eq!(parse_bootargs("sched=rr").unwrap().faults, None);
    let allowed = "a comma-separated list of sw-unpinned, no-pod-clean, clean-skips-walk";
    for bad in ["fault=", "fault=nope", "fault=sw-unpinned,", "fault=,sw-unpinned", "fault=sw-unpinned,,no-pod-clean", "fault=SW-UNPINNED"] {
        assert_eq!(err(bad), format!("bootargs: {bad}: unknown fault (allowed: {allowed})"));
    }
    assert_eq!(
        err("fault=sw-unpinned fault=no-pod-clean"),
        "bootargs: fault=no-pod-clean: given twice (allowed: each key once)"
    );
    assert!(err("fault").contains(", fault)"));
}
