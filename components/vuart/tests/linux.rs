//! The register sequences Linux's `amba-pl011` driver and `earlycon=pl011`
//! run (drivers/tty/serial/amba-pl011.c, drivers/amba/bus.c), replayed
//! against the emulated UART.

use vuart::{cr, fr, int, reg, Access, Pl011};

const UARTEN: u32 = cr::UARTEN;
const TXE: u32 = cr::TXE;
const RXE: u32 = cr::RXE;
const LBE: u32 = cr::LBE;
const LCRH_WLEN8: u32 = 0x60;
const LCRH_FEN: u32 = 0x10;
const IFLS_RX4_8_TX4_8: u32 = (2 << 3) | 2;

/// The UART and what it sent, accessed the way Linux does: `readw`/`writew`
/// for the driver (UPIO_MEM), `readl` for the AMBA bus and earlycon's FR,
/// `writeb` for earlycon's data.
struct Guest {
    uart: Pl011,
    out: Vec<u8>,
    irq: bool,
}

impl Guest {
    fn new() -> Guest {
        Guest {
            uart: Pl011::new(),
            out: Vec::new(),
            irq: false,
        }
    }

    fn access(&mut self, off: u64, a: Access) -> u32 {
        let r = self.uart.mmio(off, a).unwrap();
        if let Some(b) = r.output {
            self.out.push(b);
        }
        self.irq = r.irq_level;
        r.value
    }

    fn readl(&mut self, off: u64) -> u32 {
        self.access(off, Access::Read { width: 4 })
    }
    fn readw(&mut self, off: u64) -> u32 {
        self.access(off, Access::Read { width: 2 })
    }
    fn writew(&mut self, v: u32, off: u64) {
        self.access(off, Access::Write { width: 2, value: v });
    }
    fn writeb(&mut self, v: u32, off: u64) {
        self.access(off, Access::Write { width: 1, value: v });
    }

    /// drivers/amba/bus.c: read PeriphID and CellID from the window's end.
    fn amba_ids(&mut self) -> (u32, u32) {
        let (mut pid, mut cid) = (0, 0);
        for i in 0..4 {
            pid |= (self.readl(0x1000 - 0x20 + 4 * i) & 255) << (i * 8);
            cid |= (self.readl(0x1000 - 0x10 + 4 * i) & 255) << (i * 8);
        }
        (pid, cid)
    }

    /// earlycon's pl011_putc.
    fn early_putc(&mut self, c: u8) {
        let mut spins = 0;
        while self.readl(reg::FR) & fr::TXFF != 0 {
            spins += 1;
            assert!(spins < 1000, "TXFF stuck");
        }
        self.writeb(u32::from(c), reg::DR);
        while self.readl(reg::FR) & fr::BUSY != 0 {
            spins += 1;
            assert!(spins < 1000, "BUSY stuck");
        }
    }

    /// pl011_console_write.
    fn console_write(&mut self, s: &[u8]) {
        let old_cr = self.readw(reg::CR);
        self.writew((old_cr & !0x8000) | UARTEN | TXE, reg::CR);
        for &c in s {
            if c == b'\n' {
                self.console_putchar(b'\r');
            }
            self.console_putchar(c);
        }
        let mut spins = 0;
        while self.readw(reg::FR) & fr::BUSY != 0 {
            spins += 1;
            assert!(spins < 1000);
        }
        self.writew(old_cr, reg::CR);
    }

    fn console_putchar(&mut self, c: u8) {
        let mut spins = 0;
        while self.readw(reg::FR) & fr::TXFF != 0 {
            spins += 1;
            assert!(spins < 1000);
        }
        self.writew(u32::from(c), reg::DR);
    }
}

/// The driver's software state.
struct Driver {
    im: u32,
    xmit: std::collections::VecDeque<u8>,
    received: Vec<u8>,
}

impl Driver {
    /// pl011_register_port: mask and clear everything.
    fn register(g: &mut Guest) -> Driver {
        g.writew(0, reg::IMSC);
        g.writew(0xffff, reg::ICR);
        Driver {
            im: 0,
            xmit: Default::default(),
            received: Vec::new(),
        }
    }

    /// pl011_startup: hwinit, IFLS, enable, pl011_enable_interrupts.
    fn startup(&mut self, g: &mut Guest) {
        g.writew(
            int::OE | int::BE | int::PE | int::FE | int::RT | int::RX,
            reg::ICR,
        );
        self.im = g.readw(reg::IMSC);
        g.writew(int::RT | int::RX, reg::IMSC);
        g.writew(self.im, reg::IMSC); // pl011_allocate_irq
        g.writew(IFLS_RX4_8_TX4_8, reg::IFLS);
        g.writew(UARTEN | RXE | TXE, reg::CR);
        let _old_status = g.readw(reg::FR) & (fr::CTS | fr::DSR | fr::DCD | fr::RI);
        // pl011_enable_interrupts
        g.writew(int::RT | int::RX, reg::ICR);
        for _ in 0..64 {
            if g.readw(reg::FR) & fr::RXFE != 0 {
                break;
            }
            g.readw(reg::DR);
        }
        self.im = int::RT | int::RX;
        g.writew(self.im, reg::IMSC);
    }

    /// pl011_set_termios for 115200 8N1 from a 24 MHz clock.
    fn set_termios(&mut self, g: &mut Guest) {
        let quot = 24_000_000 * 4 / 115_200; // 833
        let old_cr = g.readw(reg::CR);
        g.writew(0, reg::CR);
        g.writew(quot & 0x3f, reg::FBRD);
        g.writew(quot >> 6, reg::IBRD);
        g.writew(LCRH_WLEN8 | LCRH_FEN, reg::LCR_H);
        g.writew(old_cr, reg::CR);
    }

    /// pl011_start_tx -> pl011_start_tx_pio.
    fn start_tx(&mut self, g: &mut Guest) {
        if self.tx_chars(g, false) {
            self.im |= int::TX;
            g.writew(self.im, reg::IMSC);
        }
    }

    /// pl011_tx_chars: true if TX interrupts must stay on.
    fn tx_chars(&mut self, g: &mut Guest, from_irq: bool) -> bool {
        let mut count = 32 >> 1;
        loop {
            if from_irq {
                if count == 0 {
                    break;
                }
                count -= 1;
            }
            let Some(&c) = self.xmit.front() else { break };
            if !from_irq && g.readw(reg::FR) & fr::TXFF != 0 {
                break;
            }
            g.writew(u32::from(c), reg::DR);
            self.xmit.pop_front();
        }
        if self.xmit.is_empty() {
            self.im &= !int::TX;
            g.writew(self.im, reg::IMSC);
            return false;
        }
        true
    }

    /// pl011_int.
    fn irq(&mut self, g: &mut Guest) -> bool {
        let mut status = g.readw(reg::RIS) & self.im;
        if status == 0 {
            return false;
        }
        let mut pass = 256;
        while status != 0 {
            g.writew(status & !(int::TX | int::RT | int::RX), reg::ICR);
            if status & (int::RT | int::RX) != 0 {
                for _ in 0..256 {
                    if g.readw(reg::FR) & fr::RXFE != 0 {
                        break;
                    }
                    self.received.push(g.readw(reg::DR) as u8);
                }
            }
            if status & int::TX != 0 {
                self.tx_chars(g, true);
            }
            pass -= 1;
            assert!(pass > 0, "interrupt storm");
            status = g.readw(reg::RIS) & self.im;
        }
        true
    }
}

#[test]
fn earlycon_prints_from_reset_state() {
    let mut g = Guest::new();
    for &c in b"Booting Linux\r\n" {
        g.early_putc(c);
    }
    assert_eq!(g.out, b"Booting Linux\r\n");
    assert!(!g.irq);
}

#[test]
fn amba_bus_matches_the_pl011_driver() {
    let mut g = Guest::new();
    let (pid, cid) = g.amba_ids();
    assert_eq!(cid, 0xb105_f00d, "AMBA_CID");
    // amba-pl011's id table: { .id = 0x00041011, .mask = 0x000fffff }.
    assert_eq!(pid & 0x000f_ffff, 0x0004_1011);
    // get_fifosize_arm: revision >= 3 gives 32.
    assert!((pid >> 20) & 0xf >= 3);
}

#[test]
fn linux_probe_console_and_tty() {
    let mut g = Guest::new();
    // Early console first, then the real driver takes over.
    for &c in b"[    0.000000] Booting\n" {
        g.early_putc(c);
    }
    g.amba_ids();
    let mut d = Driver::register(&mut g);
    assert!(!g.irq);

    // Console setup reads CR.UARTEN to decide whether to trust IBRD/FBRD:
    // it is off at reset, so the driver uses its defaults.
    assert_eq!(g.readw(reg::CR) & UARTEN, 0);
    d.set_termios(&mut g);
    g.console_write(b"console [ttyAMA0] enabled\n");

    d.startup(&mut g);
    assert!(!g.irq, "startup leaves the line low");
    d.set_termios(&mut g);
    assert_eq!(g.readw(reg::IBRD), 13);
    assert_eq!(g.readw(reg::FBRD), 1);
    assert_eq!(g.readw(reg::LCR_H), LCRH_WLEN8 | LCRH_FEN);
    assert_eq!(g.readw(reg::CR), UARTEN | RXE | TXE);

    // A tty write: everything goes out from process context; TX interrupts
    // stay masked because the FIFO never fills.
    d.xmit.extend(b"/ # ".iter());
    d.start_tx(&mut g);
    assert_eq!(d.im & int::TX, 0);
    assert!(!g.irq);

    // Keystrokes: the line rises, the handler drains, the line falls.
    for &c in b"ls\r" {
        assert!(g.uart.push_input(c));
    }
    assert!(g.uart.irq_level());
    assert!(d.irq(&mut g));
    assert_eq!(d.received, b"ls\r");
    assert!(!g.uart.irq_level());
    assert!(!d.irq(&mut g), "no spurious interrupt");

    // More console output while the tty is open.
    g.console_write(b"done\n");
    assert_eq!(g.readw(reg::CR), UARTEN | RXE | TXE, "CR restored");

    let text = String::from_utf8(g.out.clone()).unwrap();
    assert_eq!(
        text,
        "[    0.000000] Booting\nconsole [ttyAMA0] enabled\r\n/ # done\r\n"
    );
}

#[test]
fn tx_interrupt_drains_a_long_buffer_and_stops() {
    let mut g = Guest::new();
    let mut d = Driver::register(&mut g);
    d.startup(&mut g);
    d.set_termios(&mut g);
    // The driver turns TXIM on (as it does when the FIFO filled up).
    d.xmit.extend((0..100u8).map(|i| b'a' + i % 26));
    d.im |= int::TX;
    g.writew(d.im, reg::IMSC);
    assert!(g.irq, "ready-to-send fires at once");
    assert!(d.irq(&mut g));
    assert_eq!(g.out.len(), 100);
    assert_eq!(d.im & int::TX, 0, "pl011_stop_tx");
    assert!(!g.uart.irq_level());
}

#[test]
fn old_kernels_loopback_tx_provoke_is_not_printed() {
    // Linux before 4.x provoked the TX interrupt at startup by sending a NUL
    // in loopback mode, then drained it from the receiver.
    let mut g = Guest::new();
    let mut d = Driver::register(&mut g);
    let fbrd = g.readw(reg::FBRD);
    let ibrd = g.readw(reg::IBRD);
    let lcr_h = g.readw(reg::LCR_H);
    g.writew(UARTEN | TXE | LBE, reg::CR);
    g.writew(0, reg::FBRD);
    g.writew(1, reg::IBRD);
    g.writew(0, reg::LCR_H);
    g.writew(0, reg::DR);
    while g.readw(reg::FR) & fr::BUSY != 0 {}
    g.writew(fbrd, reg::FBRD);
    g.writew(ibrd, reg::IBRD);
    g.writew(lcr_h, reg::LCR_H);
    assert!(g.out.is_empty(), "the NUL stayed inside the UART");
    d.startup(&mut g);
    assert_ne!(
        g.readw(reg::FR) & fr::RXFE,
        0,
        "enable_interrupts drained it"
    );
    assert!(!g.irq);
}

#[test]
fn throttled_rx_keeps_input_and_the_line_low() {
    let mut g = Guest::new();
    let mut d = Driver::register(&mut g);
    d.startup(&mut g);
    d.set_termios(&mut g);
    // pl011_throttle_rx masks RX and RT.
    d.im &= !(int::RX | int::RT);
    g.writew(d.im, reg::IMSC);
    let mut pushed = 0;
    while g.uart.push_input(b'0' + pushed % 10) {
        pushed += 1;
    }
    assert_eq!(pushed, 32, "FIFO full, host keeps the rest");
    assert!(!g.uart.irq_level());
    // pl011_unthrottle_rx.
    d.im = int::RT | int::RX;
    g.writew(d.im, reg::IMSC);
    assert!(g.irq);
    assert!(d.irq(&mut g));
    assert_eq!(d.received.len(), 32);
    assert!(!g.uart.irq_level());
}
