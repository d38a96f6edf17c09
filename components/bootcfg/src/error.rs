//! The one-line errors of a bad device tree or command line.

use core::fmt;

use crate::fdt::FdtError;

/// A value as it was given, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown<'a> {
    Str(&'a str),
    Num(u64),
}

/// A string from the DTB or the command line, shown with its control
/// characters escaped (`\n`, `\u{1b}`), so an error stays on one line and
/// cannot drive the terminal.
#[derive(Clone, Copy, Debug)]
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::Str(s) => write!(f, "\"{}\"", Esc(s)),
            Shown::Num(n) => write!(f, "{n}"),
        }
    }
}

/// Why a boot configuration was rejected. `Display` gives one line that
/// names the field and, where there is a choice, the allowed values.
/// Borrowed strings point into the DTB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error<'a> {
    /// The blob itself is malformed.
    Dtb(FdtError),
    /// A required node or property is missing.
    Missing { node: &'a str, prop: &'static str },
    /// A property has the wrong length. `cells` are the `#address-cells`
    /// and `#size-cells` it was read with, if that decides the length.
    Length {
        node: &'a str,
        prop: &'a str,
        len: usize,
        unit: usize,
        exact: bool,
        cells: Option<(u32, u32)>,
    },
    /// A property value is not allowed.
    Value {
        node: &'a str,
        prop: &'a str,
        value: Shown<'a>,
        problem: &'static str,
        allowed: &'static str,
    },
    /// `#address-cells` / `#size-cells` this reader does not support.
    Cells {
        node: &'a str,
        address: u32,
        size: u32,
    },
    /// A device address outside its bus's `ranges`.
    Unmapped { node: &'a str, addr: u64 },
    /// A property that may not be on this node.
    PropNotAllowed {
        node: &'a str,
        prop: &'a str,
        why: &'static str,
    },
    /// A `/chosen` module in the wrong place.
    Module {
        node: &'a str,
        problem: &'static str,
    },
    /// More items than the fixed capacity.
    TooMany { what: &'static str, max: usize },
    /// No RAM in the device tree.
    NoRam,
    /// A bad `key=value` in the hypervisor's command line.
    Arg {
        token: &'a str,
        problem: &'static str,
        allowed: &'static str,
    },
    /// A `guestN.` override for a guest the device tree does not have.
    NoSuchGuest { token: &'a str, count: usize },
    /// A guest module is not inside one RAM range.
    NotInRam {
        guest: usize,
        what: &'static str,
        base: u64,
        size: u64,
    },
    /// Options of one guest that contradict each other.
    Conflict { guest: usize, problem: &'static str },
    /// Two guests ask to be the hardware domain.
    TwoHwdoms { first: usize, second: usize },
    /// A guest's memory cannot fit in the host's RAM.
    TooBig { guest: usize, field: &'static str, bytes: u64, ram: u64 },
    /// Two modules overlap.
    Overlap {
        a: (usize, &'static str),
        b: (usize, &'static str),
    },
}

impl From<FdtError> for Error<'_> {
    fn from(e: FdtError) -> Self {
        Error::Dtb(e)
    }
}

fn node(n: &str) -> Esc<'_> {
    Esc(if n.is_empty() { "/" } else { n })
}

impl fmt::Display for Error<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Dtb(e) => write!(f, "{e}"),
            Error::Missing { node: n, prop } => write!(f, "dtb: {}: missing {prop}", node(n)),
            Error::Length { node: n, prop, len, unit, exact, cells } => {
                let how = if exact { "exactly" } else { "a multiple of" };
                write!(f, "dtb: {}: {} is {len} bytes, expected {how} {unit}", node(n), Esc(prop))?;
                if let Some((a, s)) = cells {
                    write!(f, " (#address-cells = {a}, #size-cells = {s})")?;
                }
                Ok(())
            }
            Error::Value { node: n, prop, value, problem, allowed } => {
                write!(f, "dtb: {}: {} = {value}: {problem} (allowed: {allowed})", node(n), Esc(prop))
            }
            Error::Cells { node: n, address, size } => write!(
                f,
                "dtb: {}: #address-cells = {address}, #size-cells = {size} not supported (allowed: 1 or 2, 0 to 2)",
                node(n)
            ),
            Error::Unmapped { node: n, addr } => {
                write!(f, "dtb: {}: bus address {addr:#x} is outside the bus's ranges", node(n))
            }
            Error::PropNotAllowed { node: n, prop, why } => write!(f, "dtb: {}: {}: {why}", node(n), Esc(prop)),
            Error::Module { node: n, problem } => write!(f, "dtb: /chosen/{}: {problem}", Esc(n)),
            Error::TooMany { what, max } => write!(f, "dtb: more than {max} {what} (the most supported)"),
            Error::NoRam => f.write_str("dtb: no RAM: no /memory node with a non-empty reg"),
            Error::Arg { token, problem, allowed } => {
                write!(f, "bootargs: {}: {problem} (allowed: {allowed})", Esc(token))
            }
            Error::NoSuchGuest { token, count } => write!(
                f,
                "bootargs: {}: no such guest (the device tree has {count}, numbered from guest0)",
                Esc(token)
            ),
            Error::NotInRam { guest, what, base, size } => write!(
                f,
                "guest{guest}: {what} at {base:#x} size {size:#x} is not inside one RAM range"
            ),
            Error::Conflict { guest, problem } => write!(f, "guest{guest}: {problem}"),
            Error::TwoHwdoms { first, second } => write!(
                f,
                "guest{second}: a second hardware domain (guest{first} is one already; allowed: hwdom=yes on one guest)"
            ),
            Error::TooBig { guest, field, bytes, ram } => write!(
                f,
                "guest{guest}.{field} = {} MiB does not fit in host RAM ({} MiB in all)",
                bytes >> 20,
                ram >> 20
            ),
            Error::Overlap { a, b } => write!(f, "guest{} {} overlaps guest{} {}", a.0, a.1, b.0, b.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let e = Error::Value {
            node: "/chosen/module\n@1",
            prop: "hyp,sw\r",
            value: Shown::Str("y\u{1b}[2Jes\n"),
            problem: "unknown",
            allowed: "yes, no, auto",
        };
        let s = e.to_string();
        assert_eq!(s, "dtb: /chosen/module\\n@1: hyp,sw\\r = \"y\\u{1b}[2Jes\\n\": unknown (allowed: yes, no, auto)");
        assert!(!s.chars().any(char::is_control));
        let a = Error::Arg {
            token: "sched=\nrr",
            problem: "unknown scheduler",
            allowed: "rr",
        }
        .to_string();
        assert!(!a.chars().any(char::is_control), "{a}");
        let m = Error::Module {
            node: "m\t",
            problem: "p",
        }
        .to_string();
        assert!(!m.chars().any(char::is_control), "{m}");
    }
}
