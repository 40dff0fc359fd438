//! NAB's `windowedGaussian` baseline, reproduced exactly: the Gaussian tail probability of a
//! value under the mean and standard deviation of a sliding window of past values.

use super::StreamingDetector;

/// NAB's windowed-Gaussian detector: the window holds up to 6,400 past values and, once full,
/// slides in steps of 100. A point's score is `1 - Q(|z|)`, with `z` the point's distance
/// from the window's mean in standard deviations, and `Q` the Gaussian tail. The first point
/// scores 0.
///
/// Mean and standard deviation are computed as numpy computes them (pairwise summation,
/// population deviation), so the scores match NAB's published ones to the last digit shown.
/// It is the baseline other detectors are compared with, not one to deploy: each refresh
/// costs O(window).
///
/// ```
/// use x0tta_analysis::detectors::{StreamingDetector, WindowedGaussian};
/// let mut d = WindowedGaussian::new();
/// assert_eq!(d.score(0, 10844.0), 0.0);
/// assert_eq!(d.score(1, 8127.0), 1.0);   // the window is one point: any change is certain
/// assert!((d.score(2, 6210.0) - 0.992048087924).abs() < 1e-9);
/// ```
#[derive(Debug, Clone)]
pub struct WindowedGaussian {
    window: Vec<f64>,
    step: Vec<f64>,
    mean: f64,
    std: f64,
}

const WINDOW: usize = 6400;
const STEP: usize = 100;

impl Default for WindowedGaussian {
    fn default() -> Self {
        Self::new()
    }
}

impl WindowedGaussian {
    /// An empty detector.
    pub fn new() -> Self {
        Self {
            window: Vec::with_capacity(WINDOW),
            step: Vec::with_capacity(STEP),
            mean: 0.0,
            std: 1.0,
        }
    }

    fn refresh(&mut self) {
        let n = self.window.len() as f64;
        self.mean = pairwise_sum(&self.window) / n;
        let sq: Vec<f64> = self
            .window
            .iter()
            .map(|x| {
                let d = x - self.mean;
                d * d
            })
            .collect();
        self.std = (pairwise_sum(&sq) / n).sqrt();
        if self.std == 0.0 {
            self.std = 0.000001;
        }
    }
}

impl StreamingDetector for WindowedGaussian {
    fn name(&self) -> &'static str {
        "windowedGaussian"
    }

    fn score(&mut self, _timestamp: i64, value: f64) -> f64 {
        let score = if self.window.is_empty() {
            0.0
        } else {
            1.0 - tail(value, self.mean, self.std)
        };
        if self.window.len() < WINDOW {
            self.window.push(value);
            self.refresh();
        } else {
            self.step.push(value);
            if self.step.len() == STEP {
                self.window.drain(..STEP);
                self.window.append(&mut self.step);
                self.refresh();
            }
        }
        score
    }
}

/// `P(X > x)` for `X ~ N(mean, std)` when `x ≥ mean`, reflected about the mean otherwise
/// (NAB's `normalProbability`).
fn tail(x: f64, mean: f64, std: f64) -> f64 {
    let x = if x < mean { 2.0 * mean - x } else { x };
    let z = (x - mean) / std;
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// numpy's pairwise summation of doubles (`pairwise_sum` in its `loops_utils`): blocks of up
/// to 128 summed with eight accumulators, larger arrays split in halves (multiples of 8).
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        // numpy starts this sum from -0.0 (the identity of addition that keeps a -0.0 input).
        a.iter().fold(-0.0, |s, x| s + x)
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_adds_up() {
        for n in [0u64, 1, 7, 8, 9, 127, 128, 129, 1000, 6400] {
            let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert_eq!(
                pairwise_sum(&v),
                (n * n.saturating_sub(1) / 2) as f64,
                "n={n}"
            );
        }
    }

    #[test]
    fn tail_is_symmetric() {
        assert_eq!(tail(0.0, 0.0, 1.0), 0.5);
        assert!((tail(1.0, 0.0, 1.0) - tail(-1.0, 0.0, 1.0)).abs() < 1e-15);
        assert!((tail(1.96, 0.0, 1.0) - 0.025).abs() < 1e-3);
    }

    #[test]
    fn the_window_slides_in_steps_once_full() {
        let mut d = WindowedGaussian::new();
        for i in 0..WINDOW + STEP - 1 {
            d.score(i as i64, (i % 10) as f64);
        }
        assert_eq!((d.window.len(), d.step.len()), (WINDOW, STEP - 1));
        d.score(0, 5.0);
        assert_eq!((d.window.len(), d.step.len()), (WINDOW, 0));
    }
}
