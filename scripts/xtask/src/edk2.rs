//! The EDK2 test guests: Debian's UEFI firmware for QEMU virt (AAVMF and
//! AAVMF32), booted as firmware guests (`hyp,firmware`).

use std::path::PathBuf;
use std::process::Command;

use crate::root;

/// The firmware test guests and their EL1 state.
pub const GUESTS: [(&str, &str); 2] = [("edk2-arm64", "aarch64"), ("edk2-armhf", "aarch32")];

/// The firmware a test guest boots, fetched if missing; `None` for a guest
/// that is not firmware.
pub fn files(guest: &str) -> Result<Option<PathBuf>, String> {
    if !GUESTS.iter().any(|g| g.0 == guest) {
        return Ok(None);
    }
    let fd = root().join("test-images/cache/edk2").join(format!("{guest}.fd"));
    if !fd.exists() {
        eprintln!("xtask: fetching Debian's EDK2 firmware (test-images/edk2/fetch.sh)");
        let st = Command::new("bash").arg(root().join("test-images/edk2/fetch.sh")).status().map_err(|e| format!("fetch.sh: {e}"))?;
        if !st.success() || !fd.exists() {
            return Err("fetching the EDK2 firmware failed (see above)".into());
        }
    }
    Ok(Some(fd))
}

/// Its EL1 state, for a firmware test guest.
pub fn arch(guest: &str) -> Option<&'static str> {
    GUESTS.iter().find(|g| g.0 == guest).map(|g| g.1)
}
