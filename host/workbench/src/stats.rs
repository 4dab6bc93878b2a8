//! Frame timing: how long the workbench spends building each frame, kept in a small ring buffer
//! for the status bar, the exit report and tests.

use std::time::Duration;

/// The last [`FrameStats::CAPACITY`] frame durations (time spent in the workbench's own UI code,
/// not waiting for the next event).
#[derive(Debug, Clone)]
pub struct FrameStats {
    durations: Vec<Duration>,
    next: usize,
    total_frames: u64,
}

/// Statistics over the frames currently in a [`FrameStats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameSummary {
    /// Frames in the window the statistics cover.
    pub frames: usize,
    /// Frames drawn since the workbench started.
    pub total_frames: u64,
    pub mean_ms: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

impl std::fmt::Display for FrameSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames: mean {:.2} ms, median {:.2} ms, p95 {:.2} ms, max {:.2} ms",
            self.total_frames, self.mean_ms, self.median_ms, self.p95_ms, self.max_ms
        )
    }
}

impl Default for FrameStats {
    fn default() -> Self {
        FrameStats {
            durations: Vec::with_capacity(Self::CAPACITY),
            next: 0,
            total_frames: 0,
        }
    }
}

impl FrameStats {
    /// How many recent frames are kept.
    pub const CAPACITY: usize = 240;

    pub fn record(&mut self, duration: Duration) {
        if self.durations.len() < Self::CAPACITY {
            self.durations.push(duration);
        } else {
            self.durations[self.next] = duration;
        }
        self.next = (self.next + 1) % Self::CAPACITY;
        self.total_frames += 1;
    }

    /// The most recent frame's duration.
    pub fn last(&self) -> Option<Duration> {
        if self.durations.is_empty() {
            return None;
        }
        let last = (self.next + Self::CAPACITY - 1) % Self::CAPACITY;
        self.durations.get(last).copied()
    }

    pub fn total_frames(&self) -> u64 {
        self.total_frames
    }

    /// Mean, median, 95th percentile and maximum of the kept frames; `None` before the first.
    pub fn summary(&self) -> Option<FrameSummary> {
        if self.durations.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = self
            .durations
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Some(FrameSummary {
            frames: ms.len(),
            total_frames: self.total_frames,
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            median_ms: at(0.5),
            p95_ms: at(0.95),
            max_ms: ms[ms.len() - 1],
        })
    }
}

/// This process's resident memory now and at its peak, in bytes, where the platform says.
pub fn resident_memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kb| kb.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_covers_the_last_frames_only() {
        let mut stats = FrameStats::default();
        assert!(stats.summary().is_none());
        for _ in 0..FrameStats::CAPACITY {
            stats.record(Duration::from_millis(100));
        }
        for ms in 1..=FrameStats::CAPACITY as u64 {
            stats.record(Duration::from_millis(ms));
        }
        let summary = stats.summary().unwrap();
        assert_eq!(summary.frames, FrameStats::CAPACITY);
        assert_eq!(summary.total_frames, 2 * FrameStats::CAPACITY as u64);
        assert_eq!(summary.max_ms, FrameStats::CAPACITY as f64);
        assert!((summary.mean_ms - (FrameStats::CAPACITY as f64 + 1.0) / 2.0).abs() < 1e-9);
        assert_eq!(
            stats.last(),
            Some(Duration::from_millis(FrameStats::CAPACITY as u64))
        );
    }
}
