//! The statistics behind the alert detectors, pure: a baseline and its spread from a series of
//! hourly values, by the method a brand's rules select.

use super::rules::DetectionMethod;

/// Hours in the trailing window of the mean and robust methods.
pub const BASELINE_HOURS: usize = 7 * 24;
/// Weeks of history the seasonal method reads (hours: 4 × 168).
pub const SEASONAL_WEEKS: usize = 4;
/// The history a detector keeps per series.
pub const HISTORY_HOURS: usize = SEASONAL_WEEKS * BASELINE_HOURS;
/// Hours of history below which no baseline is trusted: a brand's first day never alerts.
pub const MIN_HISTORY_HOURS: usize = 24;
/// MAD × this estimates σ for normally distributed data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// What an hour is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub expected: f64,
    pub spread: f64,
}

impl Baseline {
    /// expected + k·spread.
    pub fn threshold(&self, k: f64) -> f64 {
        self.expected + k * self.spread
    }

    /// The same baseline with its spread at least `floor` (counts: Poisson noise √expected;
    /// shares: the binomial noise of the window), so a perfectly flat history does not make
    /// every wobble an alert.
    pub fn with_floor(self, floor: f64) -> Self {
        Self {
            spread: self.spread.max(floor),
            ..self
        }
    }
}

/// The baseline for the hour after `history` (oldest first, one value per hour; `None` where
/// the series has no value: before it began, or a share in an hour without mentions). `None`
/// when there is too little history to judge.
pub fn baseline(method: DetectionMethod, history: &[Option<f64>]) -> Option<Baseline> {
    match method {
        DetectionMethod::MeanStddev => mean_stddev(trailing(history)),
        DetectionMethod::Robust => median_mad(trailing(history)),
        DetectionMethod::Seasonal => seasonal(history).or_else(|| mean_stddev(trailing(history))),
    }
}

fn trailing(history: &[Option<f64>]) -> Vec<f64> {
    let start = history.len().saturating_sub(BASELINE_HOURS);
    history[start..].iter().flatten().copied().collect()
}

fn mean_stddev(values: Vec<f64>) -> Option<Baseline> {
    if values.len() < MIN_HISTORY_HOURS {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    Some(Baseline {
        expected: mean,
        spread: variance.sqrt(),
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn median_mad(mut values: Vec<f64>) -> Option<Baseline> {
    if values.len() < MIN_HISTORY_HOURS {
        return None;
    }
    let center = median(&mut values);
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
    let mad = median(&mut deviations);
    Some(Baseline {
        expected: center,
        spread: mad * MAD_TO_SIGMA,
    })
}

/// The weekly profile of the last whole weeks (at least two): the window's expected value is the
/// median of its hour of the week; the spread is the MAD (scaled to σ) of the residuals around
/// the profile. Medians, as S-H-ESD does, so past spikes move neither.
fn seasonal(history: &[Option<f64>]) -> Option<Baseline> {
    let weeks = (history.len() / BASELINE_HOURS).min(SEASONAL_WEEKS);
    if weeks < 2 {
        return None;
    }
    let used = &history[history.len() - weeks * BASELINE_HOURS..];
    let mut slots: Vec<Vec<f64>> = (0..BASELINE_HOURS)
        .map(|_| Vec::with_capacity(weeks))
        .collect();
    for (i, value) in used.iter().enumerate() {
        if let Some(v) = value {
            slots[i % BASELINE_HOURS].push(*v);
        }
    }
    // The window falls on slot 0: whole weeks after the first hour used.
    if slots[0].len() < 2 {
        return None;
    }
    let profile: Vec<Option<f64>> = slots
        .iter_mut()
        .map(|values| (!values.is_empty()).then(|| median(values)))
        .collect();
    let mut residuals: Vec<f64> = used
        .iter()
        .enumerate()
        .filter_map(|(i, value)| Some(value.as_ref()? - profile[i % BASELINE_HOURS]?))
        .collect();
    if residuals.len() < MIN_HISTORY_HOURS {
        return None;
    }
    let center = median(&mut residuals);
    let mut deviations: Vec<f64> = residuals.iter().map(|r| (r - center).abs()).collect();
    // The profile is fitted to the same values, which pulls the residuals in: scale back up
    // by √(weeks / (weeks − 1)).
    let correction = (weeks as f64 / (weeks - 1) as f64).sqrt();
    Some(Baseline {
        expected: profile[0].unwrap_or(0.0),
        spread: median(&mut deviations) * MAD_TO_SIGMA * correction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(value: f64, hours: usize) -> Vec<Option<f64>> {
        vec![Some(value); hours]
    }

    #[test]
    fn a_first_day_has_no_baseline() {
        assert_eq!(
            baseline(
                DetectionMethod::MeanStddev,
                &flat(5.0, MIN_HISTORY_HOURS - 1)
            ),
            None
        );
        assert!(baseline(DetectionMethod::MeanStddev, &flat(5.0, MIN_HISTORY_HOURS)).is_some());
    }

    #[test]
    fn mean_and_stddev_use_the_trailing_week_only() {
        let mut history = flat(100.0, 24);
        history.extend((0..BASELINE_HOURS).map(|i| Some(if i % 2 == 0 { 8.0 } else { 12.0 })));
        let b = baseline(DetectionMethod::MeanStddev, &history).unwrap();
        assert_eq!(b.expected, 10.0);
        assert_eq!(b.spread, 2.0);
        assert_eq!(b.threshold(2.0), 14.0);
    }

    #[test]
    fn a_past_spike_inflates_the_mean_but_not_the_median() {
        let mut history = flat(10.0, BASELINE_HOURS - 3);
        history.extend([Some(500.0), Some(600.0), Some(700.0)]);
        let mean = baseline(DetectionMethod::MeanStddev, &history).unwrap();
        let robust = baseline(DetectionMethod::Robust, &history).unwrap();
        assert!(mean.threshold(2.0) > 100.0, "{mean:?}");
        assert_eq!(robust.expected, 10.0);
        assert_eq!(
            robust.with_floor(10f64.sqrt()).threshold(2.0),
            10.0 + 2.0 * 10f64.sqrt()
        );
    }

    #[test]
    fn the_seasonal_baseline_expects_the_same_hour_of_the_week() {
        // Busy at hour-of-week 0 (60 a week), quiet otherwise (5).
        let history: Vec<Option<f64>> = (0..HISTORY_HOURS)
            .map(|i| Some(if i % BASELINE_HOURS == 0 { 60.0 } else { 5.0 }))
            .collect();
        let seasonal = baseline(DetectionMethod::Seasonal, &history).unwrap();
        assert_eq!(seasonal.expected, 60.0);
        assert_eq!(seasonal.spread, 0.0);
        let plain = baseline(DetectionMethod::MeanStddev, &history).unwrap();
        assert!(
            plain.threshold(2.0) < 60.0,
            "the weekly peak would alert: {plain:?}"
        );
    }

    #[test]
    fn seasonal_falls_back_to_the_mean_without_two_weeks() {
        let history = flat(7.0, BASELINE_HOURS + 10);
        assert_eq!(
            baseline(DetectionMethod::Seasonal, &history),
            baseline(DetectionMethod::MeanStddev, &history)
        );
    }

    #[test]
    fn hours_without_a_value_are_skipped() {
        let mut history = vec![None; 100];
        history.extend(flat(0.25, 30));
        let b = baseline(DetectionMethod::MeanStddev, &history).unwrap();
        assert_eq!(b.expected, 0.25);
    }
}
