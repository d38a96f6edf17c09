//! cache-oracle: a QEMU TCG plugin that plays every memory access and
//! cache maintenance instruction of a run against `cache-oracle-model` and
//! reports where real hardware would have lost or exposed stale data.
//!
//! **Is responsible for:** deciding per access whether it is cacheable (from
//! SCTLR_EL1, SCTLR_EL2 and HCR_EL2 as the CPU writes them), which pCPU
//! made it (QEMU's vCPU index) and at which level (hypervisor code or
//! guest code), translating the addresses of maintenance instructions, and
//! writing the report. **Is not responsible for:** the cache behaviour
//! itself (the model), or deciding pass/fail (xtask reads the report).
//!
//! Arguments: `out=FILE` (the report), `hyp=START-END` (physical range of
//! the hypervisor's code, hex), `cpus=N`, optional `l1=SETSxWAYS`,
//! `l2=SETSxWAYS`, `topology=private|shared` (an L2 per pCPU, the default
//! and the stricter, or one for all), `events=N` (how many to describe),
//! `watch=PA` (trace one line on stderr).
//!
//! What it cannot see (QEMU 10.0's plugin API, version 4):
//! - AArch32 general registers are not readable, so an AArch32 guest's own
//!   maintenance is replaced by a whole-cache operation (`approx_ops`): it
//!   can hide a missing clean, never invent one.
//! - There is no address translation call: a guest's `DC` by address is
//!   translated through the pages that CPU touched most recently
//!   (`untranslated` counts misses); the hypervisor maps memory 1:1.
//! - Stage-1 memory attributes are not read: with SCTLR.M and C set, RAM
//!   counts as write-back cacheable, as Linux and the test guests map it.
//! - A conditional AArch32 MCR counts as executed even when its condition
//!   fails (for maintenance, that can only over-approximate a clean).

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use cache_oracle_model::decode::{self, Insn, Reg, Set};
use cache_oracle_model::{Geometry, Holder, Kind, Model, Op, Who};
use qemu_plugin::install::{Args, Info, Value};
use qemu_plugin::plugin::{HasCallbacks, Register};
use qemu_plugin::{
    qemu_plugin_get_registers, qemu_plugin_register_atexit_cb, CallbackFlags, MemRW, PluginId,
    RegisterDescriptor, TranslationBlock, VCPUIndex,
};

const SCTLR_M: u64 = 1;
const SCTLR_C: u64 = 1 << 2;
const HCR_DC: u64 = 1 << 12;
const HCR_CD: u64 = 1 << 32;
/// Entries of each CPU's table of recently touched pages.
const PAGES: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Page {
    /// VA page number << 1 | EL2, plus one (0 = empty).
    key: u64,
    epoch: u64,
    pa: u64,
}

struct Cpu {
    sctlr_el1: u64,
    sctlr_el2: u64,
    hcr: u64,
    /// VBAR_EL2: tells a trap (synchronous entry from a lower EL) from an
    /// interrupt at the hypervisor's vectors.
    vbar: Option<u64>,
    /// SCTLR_EL1 changed by an instruction whose operand we cannot read.
    el1_unknown: bool,
    epoch: u64,
    pages: Vec<Page>,
    /// A guest instruction seen but maybe trapped: applied once the guest
    /// goes on, dropped when the hypervisor runs next (it trapped).
    pending: Option<(Insn, u64, Who, bool)>,
}

impl Cpu {
    fn new() -> Self {
        Cpu { sctlr_el1: 0, sctlr_el2: 0, hcr: 0, vbar: None, el1_unknown: false, epoch: 0, pages: vec![Page::default(); PAGES], pending: None }
    }

    fn cacheable(&self, el2: bool) -> bool {
        let on = |s: u64| s & (SCTLR_M | SCTLR_C) == SCTLR_M | SCTLR_C;
        if el2 {
            on(self.sctlr_el2)
        } else if self.hcr & HCR_CD != 0 {
            false
        } else {
            self.hcr & HCR_DC != 0 || on(self.sctlr_el1)
        }
    }

    fn slot(va: u64) -> usize {
        ((va >> 12) as usize) % PAGES
    }

    fn learn(&mut self, va: u64, pa: u64, el2: bool) {
        let key = ((va >> 12) << 1 | el2 as u64) + 1;
        self.pages[Self::slot(va)] = Page { key, epoch: self.epoch, pa: pa >> 12 };
    }

    fn translate(&self, va: u64, el2: bool) -> Option<u64> {
        let key = ((va >> 12) << 1 | el2 as u64) + 1;
        let p = self.pages[Self::slot(va)];
        (p.key == key && p.epoch == self.epoch).then_some(p.pa << 12 | (va & 0xfff))
    }
}

#[derive(Default)]
struct Extra {
    untranslated: u64,
    undecided: u64,
    unreadable: u64,
    /// Accesses made while SCTLR_EL1 could not be read back.
    unknown_sctlr: u64,
}

struct Oracle {
    model: Model,
    cpus: Vec<Cpu>,
    extra: Extra,
}

struct Config {
    out: Option<String>,
    hyp: (u64, u64),
    cpus: usize,
    l1: Geometry,
    l2: Geometry,
    shared_l2: bool,
    events: usize,
}

static ORACLE: OnceLock<Mutex<Oracle>> = OnceLock::new();
/// `watch=PA`: print every access and maintenance of that line (debugging).
static WATCH: OnceLock<u64> = OnceLock::new();

fn watched(pa: u64, size: u64, what: &str, who: Who) {
    if let Some(&w) = WATCH.get() {
        if pa >> 6 <= w >> 6 && w >> 6 <= (pa + size.max(1) - 1) >> 6 {
            eprintln!("oracle: watch {what} pa={pa:#x} pcpu={} el={} pc={:#x}", who.cpu, if who.el2 { 2 } else { 1 }, who.pc);
        }
    }
}
static REGS: OnceLock<Regs> = OnceLock::new();

struct Regs {
    x: Vec<Option<RegisterDescriptor<'static>>>,
    sctlr_el1: Option<RegisterDescriptor<'static>>,
}

fn oracle() -> std::sync::MutexGuard<'static, Oracle> {
    ORACLE.get().expect("oracle installed").lock().unwrap_or_else(|e| e.into_inner())
}

fn read(r: &RegisterDescriptor<'static>) -> Option<u64> {
    let b = r.read().ok()?;
    let mut v = [0u8; 8];
    let n = b.len().min(8);
    v[..n].copy_from_slice(&b[..n]);
    Some(u64::from_le_bytes(v))
}

/// An AArch64 general register (31 = XZR here, as in the operands we read).
fn xreg(rt: u8) -> Option<u64> {
    if rt == 31 {
        return Some(0);
    }
    read(REGS.get()?.x.get(rt as usize)?.as_ref()?)
}

struct Plugin {
    cfg: Option<Config>,
    /// The host address of guest physical address 0 of RAM, learnt from the
    /// first translation of hypervisor code (which runs 1:1).
    host_base: Option<u64>,
}

fn parse_range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-')?;
    let h = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok();
    Some((h(a)?, h(b)?))
}

fn config(args: &Args) -> Result<Config, String> {
    let get = |k: &str| -> Option<String> {
        args.parsed.get(k).map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
        })
    };
    let hyp = get("hyp").and_then(|s| parse_range(&s)).ok_or("cache-oracle: give hyp=START-END (hex)")?;
    let cpus = get("cpus").and_then(|s| s.parse().ok()).filter(|&n: &usize| (1..=8).contains(&n)).ok_or("cache-oracle: give cpus=1..8")?;
    let geo = |k: &str, d: Geometry| -> Result<Geometry, String> {
        match get(k) {
            None => Ok(d),
            Some(s) => Geometry::parse(&s).ok_or(format!("cache-oracle: {k}={s}: expected SETSxWAYS")),
        }
    };
    Ok(Config {
        out: get("out"),
        hyp,
        cpus,
        l1: geo("l1", Geometry::QEMU_A72_L1)?,
        l2: geo("l2", Geometry::QEMU_A72_L2)?,
        shared_l2: match get("topology").as_deref() {
            None | Some("private") => false,
            Some("shared") => true,
            Some(t) => return Err(format!("cache-oracle: topology={t}: expected private or shared")),
        },
        events: get("events").and_then(|s| s.parse().ok()).unwrap_or(20),
    })
}

impl Register for Plugin {
    fn register(&mut self, id: PluginId, args: &Args, _info: &Info) -> qemu_plugin::Result<()> {
        let cfg = match config(args) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        let _ = ORACLE.set(Mutex::new(Oracle {
            model: Model::new(cfg.cpus, cfg.l1, cfg.l2, cfg.shared_l2, cfg.events),
            cpus: (0..cfg.cpus).map(|_| Cpu::new()).collect(),
            extra: Extra::default(),
        }));
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
        };
        if let Some(w) = args.parsed.get("watch").and_then(|v| u64::from_str_radix(text(v).trim_start_matches("0x"), 16).ok()) {
            let _ = WATCH.set(w);
        }
        let out = cfg.out.clone();
        self.cfg = Some(cfg);
        qemu_plugin_register_atexit_cb(id, move |_| report(out.as_deref()))?;
        Ok(())
    }
}

impl HasCallbacks for Plugin {
    fn on_vcpu_init(&mut self, _id: PluginId, _vcpu: VCPUIndex) -> qemu_plugin::Result<()> {
        if REGS.get().is_none() {
            let all: Vec<RegisterDescriptor<'static>> = qemu_plugin_get_registers()?;
            let mut by_name: HashMap<String, RegisterDescriptor<'static>> =
                all.into_iter().map(|r| (r.name.to_ascii_lowercase(), r)).collect();
            let x = (0..31).map(|i| by_name.remove(&format!("x{i}"))).collect();
            // QEMU names it SCTLR (the AArch32 name) in its system register list.
            let sctlr_el1 = by_name.remove("sctlr_el1").or_else(|| by_name.remove("sctlr"));
            let _ = REGS.set(Regs { x, sctlr_el1 });
        }
        Ok(())
    }

    fn on_translation_block_translate(&mut self, _id: PluginId, tb: TranslationBlock) -> qemu_plugin::Result<()> {
        let Some(cfg) = &self.cfg else { return Ok(()) };
        let (lo, hi) = cfg.hyp;
        let first = tb.instruction(0)?;
        let haddr = first.haddr();
        if self.host_base.is_none() && haddr != 0 && (lo..hi).contains(&tb.vaddr()) {
            self.host_base = Some(haddr.wrapping_sub(tb.vaddr()));
        }
        let el2 = match self.host_base {
            Some(base) if haddr != 0 => (lo..hi).contains(&haddr.wrapping_sub(base)),
            // Before calibration only the hypervisor runs.
            None => true,
            Some(_) => false,
        };
        if el2 && tb.vaddr() & 0x7f == 0 {
            // Maybe an exception vector: decide the pending guest op there.
            let va = tb.vaddr();
            tb.register_execute_callback(move |vcpu| on_vector(vcpu, va));
        }
        let mut confirm_next = false;
        for insn in tb.instructions() {
            let pc = insn.vaddr();
            if std::mem::take(&mut confirm_next) {
                // The guest instruction before this one did not trap.
                insn.register_execute_callback(move |vcpu| settle(&mut oracle(), vcpu as usize, false));
            }
            insn.register_memory_access_callback(move |vcpu, info, va| on_access(vcpu, info, va, el2, pc), MemRW::QEMU_PLUGIN_MEM_RW);
            if insn.size() != 4 {
                continue;
            }
            let d = insn.data();
            let w = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            let mut found = None;
            let mut disas = None;
            for (set, i) in decode::candidates(w) {
                let text = disas.get_or_insert_with(|| insn.disas().unwrap_or_default());
                if set.matches(i, text) {
                    found = Some((set, i));
                    break;
                }
            }
            let Some((set, i)) = found else {
                if disas.as_deref().is_some_and(|t| t.is_empty()) {
                    oracle().extra.undecided += 1;
                }
                continue;
            };
            confirm_next = !el2;
            match set {
                Set::A64 => insn.register_execute_callback_flags(
                    move |vcpu| on_a64(vcpu, i, el2, pc),
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                ),
                Set::A32 | Set::T32 => insn.register_execute_callback_flags(
                    move |vcpu| on_a32(vcpu, i, pc),
                    CallbackFlags::QEMU_PLUGIN_CB_R_REGS,
                ),
            }
        }
        Ok(())
    }
}

fn on_access(vcpu: VCPUIndex, info: qemu_plugin::MemoryInfo, va: u64, el2: bool, pc: u64) {
    let size = 1u64 << info.size_shift();
    let write = info.is_store();
    let mut o = oracle();
    let c = vcpu as usize;
    if c >= o.cpus.len() {
        return;
    }
    // First what the guest did before this access: a TLBI or a translation
    // register write decides which page cache entries still hold.
    settle(&mut o, c, el2);
    // The page this CPU last touched at `va`, while no TLB invalidate or
    // translation register write came since, saves asking QEMU.
    let pa = match o.cpus[c].translate(va, el2) {
        Some(pa) => pa,
        None => {
            let Some(hw) = info.hwaddr(va) else { return };
            if hw.is_io() {
                return;
            }
            let pa = hw.hwaddr();
            o.cpus[c].learn(va, pa, el2);
            pa
        }
    };
    if o.cpus[c].el1_unknown && !el2 {
        // Sysregs live in CPU state, not in TCG registers: readable here.
        if let Some(v) = REGS.get().and_then(|r| r.sctlr_el1.as_ref()).and_then(read) {
            o.cpus[c].sctlr_el1 = v;
            o.cpus[c].el1_unknown = false;
        } else {
            o.extra.unknown_sctlr += 1;
        }
    }
    let sw_ops = o.model.counts.sw_ops;
    let cpu = &mut o.cpus[c];
    let cacheable = cpu.cacheable(el2);
    let cpu = &o.cpus[c];
    let who = Who { cpu: c, el2, pc };
    if WATCH.get().is_some() {
        let what = format!("{}{} sctlr_el1={:#x} unknown={} sw_ops={}", if cacheable { "" } else { "nc_" }, if write { "write" } else { "read" }, cpu.sctlr_el1, cpu.el1_unknown, sw_ops);
        let what = format!("{what} at {}", o.model.locate(pa));
        watched(pa, size, &what, who);
    }
    o.model.access(who, pa, size, write, cacheable);
}

fn on_a64(vcpu: VCPUIndex, insn: Insn, el2: bool, pc: u64) {
    let mut o = oracle();
    let c = vcpu as usize;
    if c >= o.cpus.len() {
        return;
    }
    settle(&mut o, c, el2);
    let who = Who { cpu: c, el2, pc };
    let rt = match insn {
        Insn::Write { rt, .. } | Insn::DcVa { rt, .. } | Insn::Zva { rt } | Insn::DcSw { rt, .. } => Some(rt),
        Insn::Tlbi | Insn::Context => None,
    };
    let value = match rt.map(xreg) {
        None => 0,
        Some(Some(v)) => v,
        Some(None) => {
            o.extra.unreadable += 1;
            return;
        }
    };
    if el2 {
        apply(&mut o, insn, value, who);
    } else {
        o.cpus[c].pending = Some((insn, value, who, false));
    }
}

/// Hypervisor code at a 128-byte boundary: when it is the synchronous
/// entry from a lower EL, the pending guest instruction trapped; any other
/// entry (an interrupt) means it ran.
fn on_vector(vcpu: VCPUIndex, va: u64) {
    let mut o = oracle();
    let c = vcpu as usize;
    if c >= o.cpus.len() {
        return;
    }
    let Some(vbar) = o.cpus[c].vbar else { return };
    match va.wrapping_sub(vbar) {
        0x400 | 0x600 => settle(&mut o, c, true),
        0x480 | 0x500 | 0x580 | 0x680 | 0x700 | 0x780 => settle(&mut o, c, false),
        _ => {}
    }
}

/// Resolve `c`'s pending guest instruction before anything else it does:
/// `trapped` (the hypervisor runs first) drops it, otherwise it applies.
fn settle(o: &mut Oracle, c: usize, el2: bool) {
    let Some((insn, value, who, a32)) = o.cpus[c].pending.take() else { return };
    if !el2 && a32 {
        apply_a32(o, insn, c);
    } else if !el2 {
        apply(o, insn, value, who);
    } else if let Insn::Tlbi = insn {
        // Trapped or not, assume the worst for the page caches.
        o.cpus.iter_mut().for_each(|p| p.epoch += 1);
    } else if let Insn::Context = insn {
        o.cpus[c].epoch += 1;
    } else if let (true, Insn::Write { .. }) = (a32, insn) {
        // Its operand is unreadable: read SCTLR_EL1 back when we can.
        o.cpus[c].el1_unknown = true;
    } else if let Insn::Write { reg: Reg::SctlrEl1, .. } = insn {
        // Trapped, or an interrupt came first. If it trapped, the
        // hypervisor's emulation writes SCTLR_EL1 next and overrides this.
        if WATCH.get().is_some() {
            eprintln!("oracle: watch trapped-or-interrupted {insn:?} pcpu={c} pc={:#x}", who.pc);
        }
        o.cpus[c].sctlr_el1 = value;
        o.cpus[c].el1_unknown = false;
        o.cpus[c].epoch += 1;
    }
}

/// At EL1 with stage 2 on (HCR_EL2.VM) or set/way invalidation overridden
/// (HCR_EL2.SWIO), an invalidate is performed as clean and invalidate: a
/// guest cannot discard data that is not its own.
fn el1_op(o: &Oracle, c: usize, op: Op, set_way: bool) -> Op {
    const HCR_VM: u64 = 1;
    const HCR_SWIO: u64 = 1 << 1;
    let bit = if set_way { HCR_SWIO } else { HCR_VM };
    if op == Op::Invalidate && o.cpus[c].hcr & bit != 0 {
        Op::CleanInvalidate
    } else {
        op
    }
}

fn apply(o: &mut Oracle, insn: Insn, v: u64, who: Who) {
    let (c, el2) = (who.cpu, who.el2);
    match insn {
        Insn::Write { reg, .. } => {
            if WATCH.get().is_some() && reg == Reg::SctlrEl1 {
                eprintln!("oracle: watch sctlr_el1 write pcpu={c} v={v:#x} el={} pc={:#x}", if el2 { 2 } else { 1 }, who.pc);
            }
            let cpu = &mut o.cpus[c];
            match reg {
                Reg::SctlrEl1 => {
                    cpu.sctlr_el1 = v;
                    cpu.el1_unknown = false;
                }
                Reg::SctlrEl2 => cpu.sctlr_el2 = v,
                Reg::HcrEl2 => cpu.hcr = v,
                Reg::VbarEl2 => cpu.vbar = Some(v),
            }
            cpu.epoch += 1;
        }
        Insn::Context => o.cpus[c].epoch += 1,
        Insn::Tlbi => o.cpus.iter_mut().for_each(|p| p.epoch += 1),
        Insn::DcVa { .. } | Insn::Zva { .. } => {
            let va = v;
            let cpu = &o.cpus[c];
            // The hypervisor's map is 1:1, with the MMU on or off.
            let pa = if el2 { Some(va) } else { cpu.translate(va, false) };
            let Some(pa) = pa else {
                o.extra.untranslated += 1;
                return;
            };
            let cacheable = cpu.cacheable(el2);
            if WATCH.get().is_some() {
                watched(pa, 1, &format!("{insn:?}"), who);
            }
            match insn {
                Insn::DcVa { op, .. } => {
                    let op = if el2 { op } else { el1_op(o, c, op, false) };
                    o.model.by_address(pa, op)
                }
                _ => o.model.zero_line(who, pa & !63, cacheable),
            }
        }
        Insn::DcSw { op, .. } => {
            let op = if el2 { op } else { el1_op(o, c, op, true) };
            let w = WATCH.get().copied();
            let before = w.map(|w| o.model.locate(w));
            o.model.by_set_way(c, ((v >> 1) & 7) as u32, v, op);
            if let (Some(w), Some(b)) = (w, before) {
                let after = o.model.locate(w);
                if after != b {
                    eprintln!("oracle: watch sw {op:?} v={v:#x} pcpu={c}: {b} -> {after}");
                }
            }
        }
    }
}

/// AArch32 (guest) instructions: their registers cannot be read.
fn on_a32(vcpu: VCPUIndex, insn: Insn, pc: u64) {
    let mut o = oracle();
    let c = vcpu as usize;
    if c >= o.cpus.len() {
        return;
    }
    settle(&mut o, c, false);
    o.cpus[c].pending = Some((insn, 0, Who { cpu: c, el2: false, pc }, true));
}

fn apply_a32(o: &mut Oracle, insn: Insn, c: usize) {
    match insn {
        Insn::DcVa { op, .. } => {
            let op = el1_op(o, c, op, false);
            o.model.whole(None, op)
        }
        Insn::DcSw { op, .. } => {
            let op = el1_op(o, c, op, true);
            o.model.whole(Some(c), op)
        }
        Insn::Tlbi => o.cpus.iter_mut().for_each(|p| p.epoch += 1),
        Insn::Write { .. } => {
            // SCTLR: its value cannot be read here; read it back later.
            o.cpus[c].el1_unknown = true;
            o.cpus[c].epoch += 1;
        }
        _ => o.cpus[c].epoch += 1,
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::StaleRead => "stale_read",
        Kind::LostWrite => "lost_write",
        Kind::StaleLine => "stale_line",
    }
}

fn report(out: Option<&str>) {
    let o = oracle();
    let n = o.model.counts;
    let mut text = format!(
        "oracle: stale_reads={} lost_writes={} stale_lines={} cacheable={} uncached={} va_ops={} sw_ops={} approx_ops={} untranslated={} unreadable={} undecided={} unknown_sctlr={}\n",
        n.stale_reads,
        n.lost_writes,
        n.stale_lines,
        n.cacheable,
        n.uncached,
        n.va_ops,
        n.sw_ops,
        n.approx_ops,
        o.extra.untranslated,
        o.extra.unreadable,
        o.extra.undecided,
        o.extra.unknown_sctlr
    );
    for e in &o.model.events {
        let holder = match e.holder {
            Holder::L1(c) => format!("L1 of pCPU{c}"),
            Holder::L2(_) if o.model.shared_l2() => "the shared L2".to_string(),
            Holder::L2(k) => format!("L2 of pCPU{k}"),
        };
        text += &format!(
            "oracle: {} pa={:#x} pcpu={} el={} pc={:#x} newest_data_in={}\n",
            kind_name(e.kind),
            e.pa,
            e.who.cpu,
            if e.who.el2 { 2 } else { 1 },
            e.who.pc,
            holder
        );
    }
    match out {
        Some(path) => {
            if let Ok(mut f) = std::fs::File::create(path) {
                let _ = f.write_all(text.as_bytes());
            }
        }
        None => eprint!("{text}"),
    }
}

qemu_plugin::register!(Plugin { cfg: None, host_base: None });
