// The kernel wiring hands the pool capability to the pager.
use stage2_pager::{testing, Pager};

fn main() {
    let caps = testing::grant();
    let _pager = Pager::new(caps.pod, testing::host_table(), 0);
}
