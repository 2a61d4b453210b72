//! Where the load runs: one glommio `LocalExecutor` per `--threads`, each pinned to a
//! CPU from `--cpu LIST` (round robin) or unbound; and sleeping on them.
//!
//! Every executor gets a small io_uring registered buffer area (`IO_MEMORY`): the
//! machine's locked-memory limit is small, and glommio's default would not fit even
//! one executor on it.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use glommio::{LocalExecutorBuilder, Placement};

/// io_uring registered buffer memory per executor.
pub const IO_MEMORY: usize = 256 * 1024;

/// Parse a CPU list such as `0`, `0,2` or `0-3,6`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().with_context(|| format!("bad CPU {a:?}"))?;
                let b: usize = b.trim().parse().with_context(|| format!("bad CPU {b:?}"))?;
                if a > b || b - a > 4096 {
                    bail!("bad CPU range {part:?}");
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().with_context(|| format!("bad CPU {part:?}"))?),
        }
    }
    if cpus.is_empty() {
        bail!("empty CPU list {s:?}");
    }
    Ok(cpus)
}

/// How many executors, and where.
#[derive(Debug, Clone, Default)]
pub struct Executors {
    pub threads: usize,
    /// CPUs to pin to, round robin; unbound when `None`.
    pub cpus: Option<Vec<usize>>,
    /// Busy-poll this long before sleeping in the kernel: saves the wake-up of a
    /// parked thread (an interrupt, costly in a VM) at the price of CPU time.
    pub spin: Duration,
}

/// Run `make(index)` on the executors and collect their results in order.
pub fn run_on_executors<T, F, Fut>(name: &str, executors: &Executors, make: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = T> + 'static,
{
    let threads = executors.threads.max(1);
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let placement = match executors.cpus.as_deref() {
            Some(list) if !list.is_empty() => Placement::Fixed(list[index % list.len()]),
            _ => Placement::Unbound,
        };
        let make = make.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("{name}-{index}"))
            .io_memory(IO_MEMORY)
            .spin_before_park(executors.spin)
            .spawn(move || make(index))
            .map_err(|e| anyhow!("cannot start executor {index}: {e}"))?;
        handles.push(handle);
    }
    handles
        .into_iter()
        .enumerate()
        .map(|(i, h)| h.join().map_err(|e| anyhow!("executor {i} failed: {e}")))
        .collect()
}

/// Sleep until `when` (at once if it has passed).
pub async fn sleep_until(when: Instant) {
    let dur = when.saturating_duration_since(Instant::now());
    if dur > Duration::ZERO {
        glommio::timer::sleep(dur).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0,2").unwrap(), vec![0, 2]);
        assert_eq!(parse_cpu_list("0-2, 5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }
}
