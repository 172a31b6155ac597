//! Which of this process's workers have received their partition assignment: a worker that has
//! joined its group but not yet been assigned cannot apply anything, so it is not ready.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

fn workers() -> &'static Mutex<BTreeMap<String, bool>> {
    static WORKERS: OnceLock<Mutex<BTreeMap<String, bool>>> = OnceLock::new();
    WORKERS.get_or_init(Mutex::default)
}

/// A worker of `projection` joined its group and waits for its assignment.
pub(crate) fn joining(projection: &str) {
    workers().lock().expect("not poisoned").insert(projection.to_string(), false);
}

/// The worker of `projection` received an assignment (possibly empty: more members than
/// partitions). Called from the rebalance callback.
pub(crate) fn assignment_received(projection: &str) {
    workers().lock().expect("not poisoned").insert(projection.to_string(), true);
}

/// The worker of `projection` owns `partitions` partitions (as of the last rebalance it handled).
pub(crate) fn assigned(projection: &str, partitions: usize) {
    metrics::gauge!("eventline_worker_assigned_partitions", "projection" => projection.to_string())
        .set(partitions as f64);
}

/// The worker of `projection` stopped.
pub(crate) fn stopped(projection: &str) {
    workers().lock().expect("not poisoned").remove(projection);
}

/// The projections whose workers run in this process but have no assignment yet.
pub fn awaiting_assignment() -> Vec<String> {
    let workers = workers().lock().expect("not poisoned");
    workers.iter().filter(|(_, assigned)| !**assigned).map(|(name, _)| name.clone()).collect()
}
