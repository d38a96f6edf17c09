// A second pager for the same VM from the same capability.
use stage2_pager::{testing, Pager};

fn main() {
    let caps = testing::grant();
    let _a = Pager::new(caps.stage2, testing::host_table(), 0);
    let _b = Pager::new(caps.stage2, testing::host_table(), 0);
}
